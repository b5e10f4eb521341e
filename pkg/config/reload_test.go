package config

import (
	"strings"
	"testing"
)

type ReloadInner struct {
	Rate  int      `yaml:"rate"`
	Hosts []string `yaml:"hosts"`
}

type reloadSection struct {
	Enabled     bool `yaml:"enabled"`
	ReloadInner `yaml:",inline"`
}

type reloadCfg struct {
	Listen  string        `yaml:"listen"`
	Token   Secret        `yaml:"token"`
	Limits  ReloadInner   `yaml:"limits"`
	Section reloadSection `yaml:"section"`
	Ptr     *ReloadInner  `yaml:"ptr"`
	NoTag   int
}

// ReloadPlan names changed keys by their YAML paths (inline sections under
// their parent, pointers followed, secrets and lists as a whole), applies
// only when every change is reloadable, and names every other change.
func TestReloadPlan(t *testing.T) {
	cur := reloadCfg{Listen: "a:1", Token: NewSecret("one"), Ptr: &ReloadInner{Rate: 1}}
	next := cur
	next.Token = NewSecret("two")
	next.Limits.Rate = 5
	next.Section.Hosts = []string{"h"}
	next.Ptr = &ReloadInner{Rate: 2}
	applied, err := ReloadPlan(cur, next, []string{"token", "limits", "section.hosts", "ptr.rate"})
	if err != nil || strings.Join(applied, ",") != "limits.rate,ptr.rate,section.hosts,token" {
		t.Fatalf("applied %v, err %v", applied, err)
	}
	next.Listen = "b:2"
	next.NoTag = 3
	next.Section.Enabled = true
	_, err = ReloadPlan(cur, next, []string{"token", "limits", "section.hosts", "ptr.rate"})
	for _, k := range []string{"listen: changed", "notag: changed", "section.enabled: changed"} {
		if err == nil || !strings.Contains(err.Error(), k) {
			t.Fatalf("want %q in %v", k, err)
		}
	}
	if strings.Contains(err.Error(), "token") {
		t.Fatalf("a reloadable key named as refused: %v", err)
	}
	if got, err := ReloadPlan(cur, cur, nil); err != nil || len(got) != 0 {
		t.Fatalf("no change: %v %v", got, err)
	}
	if !KeyUnder("apps[2].secret", []string{"apps"}) || KeyUnder("appsx", []string{"apps"}) {
		t.Fatal("KeyUnder")
	}
}
