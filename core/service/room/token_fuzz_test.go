package room

import (
	"strings"
	"testing"
	"time"
)

// FuzzRoomToken: room tokens come from clients. Whatever the bytes, the
// check never panics and accepts only the exact token issued for that app,
// room and account before its expiry.
func FuzzRoomToken(f *testing.F) {
	const secret = "fuzz-secret-0123456789"
	now := time.Unix(1_800_000_000, 0)
	good := signRoomToken(secret, "app|room|alice|member|1800000060")
	f.Add(good)
	f.Add(signRoomToken(secret, "app|room|alice|guest|1800000060|x"))
	f.Add(signRoomToken(secret, "app|room|alice|member|notanumber"))
	f.Add("x.y")
	f.Add(".")
	f.Add("")
	f.Add(strings.Repeat("A", 700) + "." + strings.Repeat("B", 43))
	f.Fuzz(func(t *testing.T, tok string) {
		role, ok := verifyRoomToken(secret, tok, "app", "room", "alice", now)
		if ok != (tok == good) {
			t.Fatalf("token %q: ok=%v", tok, ok)
		}
		if ok && role != "member" {
			t.Fatalf("role %q", role)
		}
		if _, ok := verifyRoomToken(secret, tok, "app", "room", "alice", now.Add(time.Minute)); ok {
			t.Fatal("expired token accepted")
		}
	})
}
