package imapi

import (
	"encoding/json"
	"testing"
	"unicode/utf8"
)

func TestSetLoginSessionID(t *testing.T) {
	for _, tc := range []struct {
		name, body, sid, want string
	}{
		{"add", `{"appkey":"a","token":"t"}`, "s1", "s1"},
		{"replace", `{"appkey":"a","session_id":"x"}`, "s1", "s1"},
		{"remove", `{"appkey":"a","session_id":"x"}`, "", ""},
		{"other case", `{"appkey":"a","SESSION_ID":"x"}`, "", ""},
		{"escaped key", `{"appkey":"a","session\u005fid":"x","Session_Id":"y"}`, "s1", "s1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := SetLoginSessionID([]byte(tc.body), tc.sid)
			if err != nil {
				t.Fatal(err)
			}
			var req LoginReq
			if err := json.Unmarshal(out, &req); err != nil {
				t.Fatal(err)
			}
			if req.SessionID != tc.want || req.AppKey != "a" {
				t.Fatalf("%s → %+v", out, req)
			}
		})
	}
	if _, err := SetLoginSessionID([]byte(`[1]`), ""); err == nil {
		t.Fatal("a non-object body was accepted")
	}
}

// FuzzSetLoginSessionID: whatever a client sends, a body that comes out
// decodes with exactly the session id set.
func FuzzSetLoginSessionID(f *testing.F) {
	f.Add([]byte(`{"appkey":"a","session_id":"x"}`), "")
	f.Add([]byte(`{"Session_ID":"x","session_id":"y"}`), "s1")
	f.Fuzz(func(t *testing.T, body []byte, sid string) {
		if !utf8.ValidString(sid) {
			return // session ids are hex
		}
		out, err := SetLoginSessionID(body, sid)
		if err != nil {
			return
		}
		var req LoginReq
		if err := json.Unmarshal(out, &req); err != nil {
			return // a field of the wrong type: the login service refuses it
		}
		if req.SessionID != sid {
			t.Fatalf("%q → %q: session %q, want %q", body, out, req.SessionID, sid)
		}
	})
}
