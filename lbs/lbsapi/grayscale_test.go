package lbsapi

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

func TestGrayscaleMatch(t *testing.T) {
	g, err := CompileGrayscale(Grayscale{PolicyVersion: 7, Rules: []GrayscaleRule{
		{Name: "vip", Version: "2.0.0", AppKeys: []string{"acme"}, Accounts: []string{"boss"}},
		{Name: "new-sdk", Version: "2.0.0-rc.1", SDK: ">=5.3.0", Percent: 100},
		{Name: "tenth", Version: "2.0.0", AppKeys: []string{"acme"}, Accounts: []string{"carol"}, Percent: 10},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if g.PolicyVersion() != 7 || g.Len() != 3 {
		t.Fatalf("version %d, len %d", g.PolicyVersion(), g.Len())
	}
	for _, tc := range []struct {
		name, appkey, account, sdk string
		rule, version              string
	}{
		{"listed account", "acme", "boss", "", "vip", "2.0.0"},
		{"listed account of another app", "demo", "boss", "", "", ""},
		{"sdk in range", "demo", "x", "5.3.1", "new-sdk", "2.0.0-rc.1"},
		{"sdk below range", "demo", "x", "5.2.9", "", ""},
		{"no sdk", "demo", "x", "", "", ""},
		{"malformed sdk", "demo", "x", "five", "", ""},
		{"listed beside a percentage", "acme", "carol", "1.0", "tenth", "2.0.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, ok := g.Match(tc.appkey, tc.account, tc.sdk)
			if ok != (tc.rule != "") || m.Rule != tc.rule || m.Version != tc.version {
				t.Fatalf("got %+v %v, want rule %q version %q", m, ok, tc.rule, tc.version)
			}
		})
	}
	// The percentage: about a tenth of acme's users, exactly those whose
	// bucket is below 1000, and the same ones every time.
	chosen := 0
	for i := range 20000 {
		acct := fmt.Sprintf("u%d", i)
		m, ok := g.Match("acme", acct, "")
		if want := GrayscaleBucket("tenth", "acme", acct) < 1000; ok != want {
			t.Fatalf("%s: chosen %v, bucket says %v", acct, ok, want)
		}
		if ok {
			chosen++
			if m.Rule != "tenth" || !strings.HasPrefix(m.Why, "in the 10%") {
				t.Fatalf("%s: %+v", acct, m)
			}
		}
	}
	if chosen < 1800 || chosen > 2200 {
		t.Fatalf("10%% of 20000 chose %d", chosen)
	}
	// Explain says why the earlier rules did not apply.
	_, skipped, ok := g.Explain("acme", "u1", "5.0.0")
	if len(skipped) < 2 || !strings.Contains(skipped[0], "account not listed") || !strings.Contains(skipped[1], "not in >=5.3.0") {
		t.Fatalf("explain: %v %v", skipped, ok)
	}
	// A nil router (no rules yet) matches nothing.
	var none *GrayscaleRouter
	if _, ok := none.Match("acme", "boss", ""); ok {
		t.Fatal("nil router matched")
	}
}

func TestGrayscaleRaisingKeepsChosen(t *testing.T) {
	compile := func(pct float64) *GrayscaleRouter {
		g, err := CompileGrayscale(Grayscale{Rules: []GrayscaleRule{{Name: "ramp", Version: "b", Percent: pct}}})
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	g5, g20 := compile(5), compile(20)
	for i := range 5000 {
		acct := fmt.Sprintf("u%d", i)
		_, in5 := g5.Match("demo", acct, "")
		_, in20 := g20.Match("demo", acct, "")
		if in5 && !in20 {
			t.Fatalf("%s chosen at 5%% but not at 20%%", acct)
		}
	}
}

func TestGrayscaleMatchApp(t *testing.T) {
	g, err := CompileGrayscale(Grayscale{Rules: []GrayscaleRule{
		{Name: "half", Version: "b", AppKeys: []string{"acme"}, Percent: 50},
		{Name: "sdk", Version: "b", AppKeys: []string{"acme"}, SDK: ">=1", Percent: 100},
		{Name: "whole", Version: "c", AppKeys: []string{"acme"}, Percent: 100},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if m, ok := g.MatchApp("acme"); !ok || m.Rule != "whole" || m.Version != "c" {
		t.Fatalf("acme: %+v %v", m, ok)
	}
	if _, ok := g.MatchApp("demo"); ok {
		t.Fatal("demo moved")
	}
}

func TestValidateGrayscale(t *testing.T) {
	known := func(a string) bool { return a == "acme" }
	for _, tc := range []struct {
		name string
		rule GrayscaleRule
		want string // "" valid
	}{
		{"valid", GrayscaleRule{Name: "ok", Version: "1.5.0", AppKeys: []string{"acme"}, Percent: 12.5}, ""},
		{"bad name", GrayscaleRule{Name: "Bad_Name", Version: "b", Percent: 1}, "not a lower-case DNS label"},
		{"no version", GrayscaleRule{Name: "a", Percent: 1}, `version: ""`},
		{"version with underscore", GrayscaleRule{Name: "a", Version: "1_5", Percent: 1}, "version"},
		{"unknown app", GrayscaleRule{Name: "a", Version: "b", AppKeys: []string{"nope"}, Percent: 1}, `unknown appkey "nope"`},
		{"bad range", GrayscaleRule{Name: "a", Version: "b", SDK: ">=five", Percent: 1}, "sdk: range"},
		{"percent above 100", GrayscaleRule{Name: "a", Version: "b", Percent: 120}, "percent: 120 not in 0..100"},
		{"negative percent", GrayscaleRule{Name: "a", Version: "b", Percent: -1}, "not in 0..100"},
		{"three decimals", GrayscaleRule{Name: "a", Version: "b", Percent: 0.125}, "at most two decimals"},
		{"chooses nobody", GrayscaleRule{Name: "a", Version: "b", AppKeys: []string{"acme"}}, "chooses nobody"},
		{"bad account", GrayscaleRule{Name: "a", Version: "b", Accounts: []string{"a b"}}, `accounts: "a b"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateGrayscale([]GrayscaleRule{tc.rule}, known)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
	err := ValidateGrayscale([]GrayscaleRule{{Name: "a", Version: "b", Percent: 1}, {Name: "a", Version: "b", Percent: 1}}, nil)
	if err == nil || !strings.Contains(err.Error(), `duplicate "a"`) {
		t.Fatalf("duplicate: %v", err)
	}
}

func TestVersionToken(t *testing.T) {
	for label, want := range map[string]string{"1.5.0": "1_5_0", "canary-2": "canary-2", "b": "b"} {
		if !ValidVersionLabel(label) || VersionToken(label) != want {
			t.Errorf("%s: valid %v token %s", label, ValidVersionLabel(label), VersionToken(label))
		}
	}
	for _, bad := range []string{"", "-a", "a.", "a b", "a_b", strings.Repeat("a", 33)} {
		if ValidVersionLabel(bad) {
			t.Errorf("%q accepted", bad)
		}
	}
}

// FuzzGrayscale feeds the heartbeat reply's rule list, as JSON from the
// network, through compilation and matching.
func FuzzGrayscale(f *testing.F) {
	f.Add([]byte(`{"policy_version":3,"rules":[{"name":"a","version":"2.0","appkeys":["acme"],"sdk":">=5 <6","accounts":["x"],"percent":10}]}`), "acme", "x", "5.1")
	f.Add([]byte(`{"rules":[{"name":"b","version":"c","percent":100}]}`), "demo", "", "")
	f.Add([]byte(`{"rules":[{"name":"b","version":"c","percent":1e308}]}`), "demo", "y", "v1")
	f.Fuzz(func(t *testing.T, data []byte, appkey, account, sdk string) {
		var g Grayscale
		if json.Unmarshal(data, &g) != nil {
			return
		}
		r, err := CompileGrayscale(g)
		if err != nil {
			return
		}
		m, ok := r.Match(appkey, account, sdk)
		if ok && !ValidVersionLabel(m.Version) {
			t.Fatalf("matched an invalid version %q", m.Version)
		}
		r.MatchApp(appkey)
		r.Explain(appkey, account, sdk)
	})
}
