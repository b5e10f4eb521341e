package gateway

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/longlink/longlink/core/imapi"

	"github.com/longlink/longlink/core/internal/buswire"
	"github.com/longlink/longlink/pkg/waittest"
)

// presenceLog records what the gateway tells Presence.
type presenceLog struct {
	mu     sync.Mutex
	events []string
}

func (p *presenceLog) SessionOpened(s buswire.Session) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.events = append(p.events, fmt.Sprintf("open %s/%s gw=%s", s.Account, s.DeviceType, s.Gateway))
}

func (p *presenceLog) SessionClosed(s buswire.Session, reason string, kicked bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.events = append(p.events, fmt.Sprintf("close %s/%s kicked=%v %s", s.Account, s.DeviceType, kicked, reason))
}

func (p *presenceLog) has(e string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Contains(p.events, e)
}

// Presence hears of every session opening and closing, with the reason,
// and whether it was a kick.
func TestPresenceReports(t *testing.T) {
	pl := &presenceLog{}
	e := newEnvWith(t, nil, Deps{Presence: pl})
	old := e.login(t, "carol", "phone")
	pc := e.login(t, "carol", "pc")
	phone := e.login(t, "carol", "phone") // kicks the old phone
	old.expectClosed()
	lo := pc.request(imapi.OpLogout, nil)
	if f, _ := pc.response(lo); f.Code != 0 {
		t.Fatalf("logout code %d", f.Code)
	}
	pc.expectClosed()
	_ = phone.c.NetConn().Close()
	for _, want := range []string{
		"open carol/phone gw=gw-test", "open carol/pc gw=gw-test",
		"close carol/pc kicked=false logout", "close carol/phone kicked=false disconnected",
	} {
		waittest.Until(t, 5*time.Second, "the presence report", func() bool { return pl.has(want) })
	}
	// A drain kicks the sessions left.
	e.login(t, "dave", "pad")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.g.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	waittest.Until(t, 5*time.Second, "the drain's kick reported", func() bool { return pl.has("close dave/pad kicked=true " + ReasonDraining) })
	pl.mu.Lock()
	defer pl.mu.Unlock()
	kicks := 0
	for _, ev := range pl.events {
		if strings.HasPrefix(ev, "close carol/phone kicked=true") {
			kicks++
		}
	}
	if kicks != 1 {
		t.Fatalf("events %q: want one kick", pl.events)
	}
}
