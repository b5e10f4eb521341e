package wan

import "testing"

// Rates come from world files (operators), not the network; any string must
// give an error or a usable, non-negative rate.
func FuzzParseRate(f *testing.F) {
	for _, s := range []string{"100mbit", "1.5gbit", "64kbit", "1000", " 10 MBit ", "", "x", "1e9", "99999999999999999999gbit"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRate(s)
		if err == nil && r < 0 {
			t.Fatalf("ParseRate(%q) = %d", s, r)
		}
	})
}
