package webhook

import (
	"encoding/json"
	"time"

	"github.com/longlink/longlink/core/imapi"

	"github.com/longlink/longlink/core/internal/buswire"
)

// SessionData is the data of login, logout and kick events.
type SessionData struct {
	Account    string `json:"account"`
	DeviceID   string `json:"device_id,omitempty"`
	DeviceType string `json:"device_type,omitempty"`
	SessionID  string `json:"session_id,omitempty"`
	Gateway    string `json:"gateway,omitempty"`
	ClientIP   string `json:"client_ip,omitempty"`
	SDK        string `json:"sdk,omitempty"`
	// Reason explains a kick (or a logout) in words.
	Reason string `json:"reason,omitempty"`
}

// MessageEvent is the data-sync event of a stored message. Its id is
// derived from the message id, so publishing the same message twice
// (a retried send) is deduplicated by the stream.
func MessageEvent(m *imapi.Message) (Event, error) {
	data, err := json.Marshal(m)
	if err != nil {
		return Event{}, err
	}
	return Event{ID: "msg-" + m.MsgID, Kind: KindMessage, Time: m.Time, Data: data}, nil
}

// SessionEvent is a login, logout or kick event of sess at t; reason is
// empty for logins.
func SessionEvent(kind Kind, sess *buswire.Session, reason string, t time.Time) (Event, error) {
	data, err := json.Marshal(&SessionData{
		Account: sess.Account, DeviceID: sess.DeviceID, DeviceType: sess.DeviceType, SessionID: sess.SessionID,
		Gateway: sess.Gateway, ClientIP: sess.ClientIP, SDK: sess.SDK, Reason: reason,
	})
	if err != nil {
		return Event{}, err
	}
	return Event{Kind: kind, Time: t.UnixMilli(), Data: data}, nil
}
