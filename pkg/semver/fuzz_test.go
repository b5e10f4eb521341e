package semver

import "testing"

func FuzzVersionRange(f *testing.F) {
	for _, s := range []string{">=5.2.0 <5.3.0", "=1.0.0 || >2", "v5.2.1-rc.1+b", "1", "<=0.0.0-a"} {
		f.Add(s, "5.2.1")
	}
	f.Fuzz(func(t *testing.T, rng, ver string) {
		r, err := ParseRange(rng)
		v, verr := ParseVersion(ver)
		if err != nil || verr != nil {
			return
		}
		r.Contains(v)
		// a parsed version prints as something that parses to the same version
		v2, err := ParseVersion(v.String())
		if err != nil || v2.Compare(v) != 0 {
			t.Fatalf("%q → %v → %v (%v)", ver, v, v2, err)
		}
	})
}
