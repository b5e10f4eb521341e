// Package semver parses SDK and node versions ("5.2.1", "v5.2.1-rc.1")
// and version ranges (">=5.2.0 <5.3.0 || =6.0.0"): the LBS matches SDK
// versions against policy rules with it, and so do gateways for grayscale
// routing, so both read a range the same way.
package semver

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Version is a parsed SDK version: major.minor.patch with an optional
// pre-release ("5.2.0-beta.1"), which sorts before the release.
type Version struct {
	Major, Minor, Patch int
	Pre                 string
}

// ParseVersion parses "5", "5.2", "5.2.1", "v5.2.1-rc.1" (build metadata after
// '+' is ignored).
func ParseVersion(s string) (Version, error) {
	var v Version
	s = strings.TrimPrefix(strings.TrimSpace(s), "v")
	if i := strings.IndexByte(s, '+'); i >= 0 {
		s = s[:i]
	}
	if i := strings.IndexByte(s, '-'); i >= 0 {
		v.Pre = s[i+1:]
		s = s[:i]
		if v.Pre == "" || len(v.Pre) > 64 {
			return Version{}, errors.New("bad pre-release")
		}
	}
	if s == "" || len(s) > 32 {
		return Version{}, fmt.Errorf("version %q: empty or too long", s)
	}
	nums := [3]int{}
	for i := 0; ; i++ {
		if i == 3 {
			return Version{}, fmt.Errorf("version %q: more than three numbers", s)
		}
		p := s
		dot := strings.IndexByte(s, '.')
		if dot >= 0 {
			p, s = s[:dot], s[dot+1:]
		}
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 1<<20 || p == "" || p[0] == '+' || p[0] == '-' {
			return Version{}, fmt.Errorf("version: %q is not a number", p)
		}
		nums[i] = n
		if dot < 0 {
			break
		}
	}
	v.Major, v.Minor, v.Patch = nums[0], nums[1], nums[2]
	return v, nil
}

// Compare returns -1, 0 or 1.
func (v Version) Compare(o Version) int {
	for _, d := range [3]int{v.Major - o.Major, v.Minor - o.Minor, v.Patch - o.Patch} {
		if d < 0 {
			return -1
		}
		if d > 0 {
			return 1
		}
	}
	switch {
	case v.Pre == o.Pre:
		return 0
	case v.Pre == "":
		return 1
	case o.Pre == "":
		return -1
	case v.Pre < o.Pre:
		return -1
	}
	return 1
}

func (v Version) String() string {
	s := fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch)
	if v.Pre != "" {
		s += "-" + v.Pre
	}
	return s
}

// Range is a set of versions: alternatives separated by "||", each a
// space-separated list of comparisons that must all hold, e.g.
// ">=5.2.0 <5.3.0 || =6.0.0".
type Range struct {
	alts [][]cmp
}

type cmp struct {
	op string
	v  Version
}

// ParseRange parses a version range.
func ParseRange(s string) (Range, error) {
	if len(s) > 256 {
		return Range{}, errors.New("range too long")
	}
	var r Range
	for _, alt := range strings.Split(s, "||") {
		var cs []cmp
		for _, f := range strings.Fields(alt) {
			op := ""
			for _, o := range []string{">=", "<=", ">", "<", "="} {
				if strings.HasPrefix(f, o) {
					op = o
					break
				}
			}
			vs := f[len(op):]
			if op == "" {
				op = "="
			}
			v, err := ParseVersion(vs)
			if err != nil {
				return Range{}, fmt.Errorf("range %q: %w", s, err)
			}
			cs = append(cs, cmp{op, v})
		}
		if len(cs) == 0 {
			return Range{}, fmt.Errorf("range %q: empty alternative", s)
		}
		r.alts = append(r.alts, cs)
	}
	return r, nil
}

// Contains reports whether v is in the range.
func (r Range) Contains(v Version) bool {
	for _, alt := range r.alts {
		ok := true
		for _, c := range alt {
			d := v.Compare(c.v)
			switch c.op {
			case ">=":
				ok = d >= 0
			case ">":
				ok = d > 0
			case "<=":
				ok = d <= 0
			case "<":
				ok = d < 0
			case "=":
				ok = d == 0
			}
			if !ok {
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}
