package imapi

import "testing"

func TestConvIDs(t *testing.T) {
	if id := P2PConvID("bob", "alice"); id != "p:alice:bob" || id != P2PConvID("alice", "bob") {
		t.Fatalf("P2PConvID is not symmetric and sorted: %q", id)
	}
	for _, tc := range []struct {
		id   string
		typ  int
		a, b string
		ok   bool
	}{
		{"p:alice:bob", ConvP2P, "alice", "bob", true},
		{"p:bob:alice", 0, "", "", false}, // not in sorted order
		{"g:team", ConvGroup, "team", "", true},
		{"s:big", ConvSuper, "big", "", true},
		{"s:", 0, "", "", false},
		{"s:a:b", 0, "", "", false},
		{"p:alice", 0, "", "", false},
		{"p::bob", 0, "", "", false},
		{"p:a:b:c", 0, "", "", false},
		{"g:", 0, "", "", false},
		{"g:a:b", 0, "", "", false},
		{"x:a", 0, "", "", false},
		{"", 0, "", "", false},
	} {
		typ, a, b, ok := ParseConvID(tc.id)
		if typ != tc.typ || a != tc.a || b != tc.b || ok != tc.ok {
			t.Errorf("ParseConvID(%q) = %d %q %q %v, want %d %q %q %v", tc.id, typ, a, b, ok, tc.typ, tc.a, tc.b, tc.ok)
		}
	}
}

// Conversation ids arrive from clients (sync, history, read, recall): any
// string must parse or be refused, and what parses must name itself again.
func FuzzParseConvID(f *testing.F) {
	for _, s := range []string{"p:alice:bob", "g:team", "s:big", "p:b:a", "p::", "g:", "p:a:b:c", "", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		typ, a, b, ok := ParseConvID(id)
		if !ok {
			return
		}
		var again string
		switch typ {
		case ConvP2P:
			again = P2PConvID(a, b)
		case ConvGroup:
			again = GroupConvID(a)
		case ConvSuper:
			again = SuperConvID(a)
		default:
			t.Fatalf("ok with type %d", typ)
		}
		if again != id {
			t.Fatalf("ParseConvID(%q) → %d %q %q, which names %q", id, typ, a, b, again)
		}
	})
}
