package gateway

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/longlink/longlink/core/imapi"

	"github.com/longlink/longlink/core/internal/buswire"
	"github.com/longlink/longlink/pkg/waittest"
)

// A member added (or removed) between the login service's lookup of the
// account's super-groups and the session's registration: the event on the
// account's subject is heard while the login is pending and applied after
// the answer's list, so the new session follows the group from the start.
func TestSuperMembershipChangedDuringLogin(t *testing.T) {
	e := newEnv(t, nil)
	svcNC := connectNATS(t, e.ns)
	event := func(lr imapi.LoginReq, group, kind string) {
		t.Helper()
		b := mustJSON(buswire.Push{Op: imapi.OpSuperEvent, Body: mustJSON(imapi.SuperEvent{GroupID: group, Kind: kind, By: "owner"})})
		if err := svcNC.Publish(buswire.UserSubject(lr.AppKey, lr.Account), b); err != nil {
			t.Error(err)
		}
		if err := svcNC.Flush(); err != nil {
			t.Error(err)
		}
	}
	// The service's lookup ran before the change: the answer is stale.
	e.svc.beforeLogin = func(lr imapi.LoginReq) []string {
		switch lr.DeviceType {
		case "phone": // added to g1 after the lookup
			event(lr, "g1", imapi.SuperJoined)
			return nil
		case "pc": // same account, second session: added to g2
			event(lr, "g2", imapi.SuperJoined)
			return []string{"g1"}
		case "pad": // removed from g3 after the lookup
			event(lr, "g3", imapi.SuperRemoved)
			return []string{"g1", "g2", "g3"}
		}
		return nil
	}
	following := func(c *client, group string) bool {
		e.g.mu.Lock()
		defer e.g.mu.Unlock()
		for _, a := range e.g.accounts {
			for _, s := range a.sessions {
				if s.info.SessionID == c.sess {
					_, ok := s.supers[buswire.SuperSubject("app", group)]
					return ok
				}
			}
		}
		return false
	}
	groupPush := func(group, text string) {
		t.Helper()
		if err := e.g.nc.Flush(); err != nil { // the gateway's subscriptions reach the server
			t.Fatal(err)
		}
		b := mustJSON(buswire.Push{Op: imapi.OpPush, Body: mustJSON(imapi.Message{ConvID: imapi.SuperConvID(group), From: "owner", Body: json.RawMessage(`{"text":"` + text + `"}`)})})
		if err := svcNC.Publish(buswire.SuperSubject("app", group), b); err != nil {
			t.Fatal(err)
		}
	}
	expectPush := func(c *client, group string) {
		t.Helper()
		for {
			f := c.read()
			if f.IsPush() && f.Op == imapi.OpSuperEvent {
				continue // the live join event of a session already registered
			}
			var m imapi.Message
			if !f.IsPush() || f.Op != imapi.OpPush || json.Unmarshal(f.Body, &m) != nil || m.ConvID != imapi.SuperConvID(group) {
				t.Fatalf("want the %s push, got %+v %s", group, f, f.Body)
			}
			return
		}
	}

	phone := e.login(t, "ann", "phone")
	waittest.Until(t, 5*time.Second, "the phone following g1", func() bool { return following(phone, "g1") })
	groupPush("g1", "one")
	expectPush(phone, "g1")

	pc := e.login(t, "ann", "pc")
	waittest.Until(t, 5*time.Second, "the pc following g1 and g2, the phone g2", func() bool { return following(pc, "g1") && following(pc, "g2") && following(phone, "g2") })
	groupPush("g2", "two")
	expectPush(pc, "g2")
	expectPush(phone, "g2")

	pad := e.login(t, "ann", "pad")
	waittest.Until(t, 5*time.Second, "the pad following g1 and g2", func() bool { return following(pad, "g1") && following(pad, "g2") })
	if following(pad, "g3") {
		t.Fatal("the session follows g3, removed while it logged in")
	}
	e.g.mu.Lock()
	_, g3 := e.g.supers[buswire.SuperSubject("app", "g3")]
	e.g.mu.Unlock()
	if g3 {
		t.Fatal("g3's subject is still subscribed")
	}
}

// A login that fails leaves no subscription behind.
func TestFailedLoginReleasesAccount(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial(t)
	seq := c.request(imapi.OpLogin, imapi.LoginReq{AppKey: "app", Account: "eve", Token: "nope"})
	if f := c.read(); !f.IsResponse() || f.Seq != seq || f.Code != imapi.ErrUnauthorized {
		t.Fatalf("login: %+v", f)
	}
	e.g.mu.Lock()
	n := len(e.g.accounts)
	e.g.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d account subscriptions after a refused login", n)
	}
}
