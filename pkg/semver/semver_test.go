package semver

import "testing"

func TestVersionRange(t *testing.T) {
	r, err := ParseRange(">=5.2.0 <5.3.0 || =6.0.0")
	if err != nil {
		t.Fatal(err)
	}
	for v, want := range map[string]bool{"5.2.0": true, "5.2.99": true, "5.3.0": false, "5.1.9": false, "6.0.0": true, "6.0.1": false, "v5.2.1+build7": true, "5.2": true} {
		pv, err := ParseVersion(v)
		if err != nil {
			t.Fatal(v, err)
		}
		if r.Contains(pv) != want {
			t.Errorf("%s: %v", v, !want)
		}
	}
	for _, bad := range []string{"", ">=", "a.b", "1.2.3.4", ">=1 ||"} {
		if _, err := ParseRange(bad); err == nil {
			t.Errorf("ParseRange(%q) accepted", bad)
		}
	}
}
