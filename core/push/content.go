package push

import (
	_ "time/tzdata" // do-not-disturb zones must resolve on hosts without a zoneinfo database

	"encoding/json"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/store"
)

var zones sync.Map // name → *time.Location

func zone(name string) *time.Location {
	if name == "" {
		return time.UTC
	}
	if l, ok := zones.Load(name); ok {
		return l.(*time.Location)
	}
	l, err := time.LoadLocation(name)
	if err != nil {
		return time.UTC
	}
	zones.Store(name, l)
	return l
}

// ValidZone reports whether name is a time zone this process knows.
func ValidZone(name string) bool {
	if name == "" {
		return true
	}
	_, err := time.LoadLocation(name)
	return err == nil
}

// InDND reports whether now falls in the account's do-not-disturb window
// (in its time zone). Start == End is the whole day; End < Start crosses
// midnight.
func InDND(ps store.PushSettings, now time.Time) bool {
	if !ps.DNDEnabled {
		return false
	}
	t := now.In(zone(ps.DNDZone))
	m := t.Hour()*60 + t.Minute()
	switch {
	case ps.DNDStart == ps.DNDEnd:
		return true
	case ps.DNDStart < ps.DNDEnd:
		return m >= ps.DNDStart && m < ps.DNDEnd
	default:
		return m >= ps.DNDStart || m < ps.DNDEnd
	}
}

// Content is a notification's title and body for a message, as the app's
// preview mode allows.
func Content(app *AppConfig, m *imapi.Message) (title, body string) {
	if app.Preview == PreviewHidden {
		return app.Title, app.HiddenBody
	}
	title = m.From
	if m.ConvType == imapi.ConvGroup {
		title = m.From + " (" + m.To + ")"
	}
	if app.Preview == PreviewSender {
		return title, app.HiddenBody
	}
	return title, preview(m, app.PreviewChars)
}

// preview is the start of a text message ({"text": …} or a JSON string),
// or "[type]" for anything else.
func preview(m *imapi.Message, chars int) string {
	var text string
	var obj struct {
		Text string `json:"text"`
	}
	if m.Type == "text" {
		if json.Unmarshal(m.Body, &obj) == nil && obj.Text != "" {
			text = obj.Text
		} else {
			_ = json.Unmarshal(m.Body, &text)
		}
	}
	if text == "" {
		return "[" + m.Type + "]"
	}
	if utf8.RuneCountInString(text) <= chars {
		return text
	}
	r := []rune(text)
	return string(r[:chars]) + "…"
}
