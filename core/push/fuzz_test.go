package push

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/longlink/longlink/core/internal/buswire"
)

func sessionOf(gw, appkey, account, sid string) *buswire.Session {
	return &buswire.Session{Gateway: gw, AppKey: appkey, Account: account, SessionID: sid}
}

func errorsIs(err, target error) bool { return errors.Is(err, target) }

// Provider answers arrive from the network: classifying them never panics
// and a 200 is the only delivered outcome.
func FuzzProviderAnswers(f *testing.F) {
	f.Add(410, []byte(`{"reason":"Unregistered"}`))
	f.Add(404, []byte(`{"error":{"code":404,"status":"NOT_FOUND","details":[{"errorCode":"UNREGISTERED"}]}}`))
	f.Add(200, []byte(`{"access_token":"ya29.x","expires_in":3599,"token_type":"Bearer"}`))
	f.Add(403, []byte(`{"reason":"ExpiredProviderToken"}`))
	f.Add(500, []byte(`{"error":null}`))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		for _, r := range []result{classifyAPNs(status, body), classifyFCM(status, body), classifyHook(status)} {
			if r.outcome == delivered && (status < 200 || status > 299) {
				t.Fatalf("status %d delivered", status)
			}
			if r.outcome != delivered && r.err == nil {
				t.Fatalf("status %d: %v without an error", status, r.outcome)
			}
		}
		if tr, err := parseTokenResponse(body); err == nil && (tr.AccessToken == "" || tr.ExpiresIn <= 0) {
			t.Fatalf("accepted an unusable token response %+v", tr)
		}
	})
}

// Presence keys, tasks, sends and session events come off the bus.
func FuzzBusDecoders(f *testing.F) {
	f.Add([]byte(`s.Z3cx.YXBwMQ.Ym9i.czE`))
	f.Add([]byte(`{"appkey":"a","account":"b","message":{"msg_id":"m","body":{}}}`))
	f.Add([]byte(`{"id":"x","appkey":"a","provider":"apns","token":"t","badge":2,"data":{"k":"v"}}`))
	f.Add([]byte(`{"id":"e","kind":"kick","session":{"appkey":"a","account":"b"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if gw, app, acct, sid, ok := parseSessionKey(string(b)); ok {
			s := struct{ Gateway, AppKey, Account, SessionID string }{gw, app, acct, sid}
			if sessionKey(sessionOf(s.Gateway, s.AppKey, s.Account, s.SessionID)) != string(b) {
				t.Fatalf("key %q does not round-trip", b)
			}
		}
		if tk, err := decodeTask(b); err == nil && (tk.AppKey == "" || tk.Message.MsgID == "") {
			t.Fatalf("task without its ids: %+v", tk)
		}
		if n, err := decodeNotification(b); err == nil {
			if _, err := apnsPayload(n); err != nil {
				t.Fatal(err)
			}
			if _, err := fcmMessage(n); err != nil {
				t.Fatal(err)
			}
		}
		var ev SessionEvent
		_ = json.Unmarshal(b, &ev)
	})
}

func jetstreamFor(nc *nats.Conn) (jetstream.JetStream, error) { return jetstream.New(nc) }
