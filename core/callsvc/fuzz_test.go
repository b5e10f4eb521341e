package callsvc

import (
	"encoding/json"
	"strings"
	"testing"
)

// FuzzParseSignal feeds arbitrary request bodies to the signal decoder: it
// must never panic, and what it accepts is safe to publish (a subject-safe
// callee other than the sender, a known kind, a bounded payload).
func FuzzParseSignal(f *testing.F) {
	f.Add([]byte(`{"call_id":"c1","to":"bob","kind":"invite","media":"audio","payload":{"sdp":"v=0"}}`))
	f.Add([]byte(`{"call_id":"c1","to":"bob.>","kind":"invite"}`))
	f.Add([]byte(`{"call_id":"","to":"","kind":""}`))
	f.Add([]byte(`nope`))
	f.Fuzz(func(t *testing.T, body []byte) {
		sig, reason, err := parseSignal(body, "alice", 1024)
		if err != nil {
			if reason == "" {
				t.Fatal("refusal without a reason")
			}
			return
		}
		if sig.To == "alice" || strings.ContainsAny(sig.To, ".*> :") || !signalKinds[sig.Kind] || len(sig.Payload) > 1024 {
			t.Fatalf("accepted %+v", sig)
		}
		if _, err := json.Marshal(sig); err != nil {
			t.Fatalf("accepted signal does not encode: %v", err)
		}
	})
}
