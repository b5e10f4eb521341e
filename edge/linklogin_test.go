package edge

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/link"
	"github.com/longlink/longlink/core/logintoken"
)

func TestEdgeLoginsAnswer(t *testing.T) {
	seed, pub, _ := logintoken.GenerateKey()
	signer, _ := logintoken.NewSigner("t1", seed)
	v := logintoken.NewVerifier()
	if err := v.Add("t1", pub); err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	l := &edgeLogins{tokens: v, now: func() time.Time { return now }}
	good, _ := signer.Issue("demo", "alice", now.Add(time.Hour))
	login := func(account, token string, extra string) link.Frame {
		body := `{"appkey":"demo","account":"` + account + `","token":"` + token + `"` + extra + `}`
		return link.Frame{Op: imapi.OpLogin, Seq: 1, Body: []byte(body)}
	}
	sessionOf := func(f link.Frame) string {
		var req imapi.LoginReq
		if err := json.Unmarshal(f.Body, &req); err != nil {
			t.Fatal(err)
		}
		return req.SessionID
	}

	// No core answer seen yet: forwarded, and a client's own session id
	// never reaches the gateway.
	out, ans, res := l.answer(login("alice", good, `,"Session_ID":"0123456789abcdef0123456789abcdef"`))
	if ans != nil || res != "forwarded_not_ready" || sessionOf(out) != "" {
		t.Fatalf("before learning: %v %s session %q", ans, res, sessionOf(out))
	}
	l.learn([]byte(`{"session_id":"x","heartbeat_sec":45}`))

	for _, tc := range []struct {
		name string
		f    link.Frame
		want string
	}{
		{"opaque", login("alice", "00ff", ""), "forwarded_opaque"},
		{"other account", login("bob", good, ""), "forwarded_invalid"},
		{"not json", link.Frame{Op: imapi.OpLogin, Seq: 1, Body: []byte("{")}, "forwarded_invalid"},
		{"not a login", link.Frame{Op: imapi.OpSend, Seq: 1, Body: []byte("{}")}, "forwarded_invalid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, ans, res := l.answer(tc.f); ans != nil || res != tc.want {
				t.Fatalf("answered %v, result %s, want %s", ans != nil, res, tc.want)
			}
		})
	}

	out, ans, res = l.answer(login("alice", good, `,"device_type":"phone","session_id":"ffffffffffffffffffffffffffffffff"`))
	if ans == nil || res != "answered" {
		t.Fatalf("signed token: result %s", res)
	}
	var resp imapi.LoginResp
	if err := json.Unmarshal(ans.Body, &resp); err != nil {
		t.Fatal(err)
	}
	if !ans.IsResponse() || ans.Seq != 1 || resp.HeartbeatSec != 45 || resp.ServerTime != now.UnixMilli() || len(resp.SessionID) != 32 {
		t.Fatalf("answer %+v seq %d", resp, ans.Seq)
	}
	if sid := sessionOf(out); sid != resp.SessionID {
		t.Fatalf("the core gets session %q, the client %q", sid, resp.SessionID)
	}
	var req imapi.LoginReq
	_ = json.Unmarshal(out.Body, &req)
	if req.DeviceType != "phone" || req.Token != good {
		t.Fatalf("forwarded login lost fields: %+v", req)
	}
}
