package wan

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/longlink/longlink/pkg/config"
)

func TestConfig(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		wantErr []string
		check   func(t *testing.T, c Config)
	}{
		{name: "minimal", yaml: "nodes: [{name: a}, {name: b}]\nlinks: [{a: a, b: b}]\n", check: func(t *testing.T, c Config) {
			w, err := New(c, Deps{})
			if err != nil {
				t.Fatal(err)
			}
			if w.Addr("a").String() != "10.99.0.1" || w.Addr("b").String() != "10.99.0.2" {
				t.Fatalf("addresses %v %v", w.Addr("a"), w.Addr("b"))
			}
		}},
		{name: "directions override both", yaml: `
nodes: [{name: a}, {name: b, address: 10.99.0.20}]
links:
  - a: a
    b: b
    both: {delay: 10ms, loss: 0.01}
    b_to_a: {delay: 30ms, rate: 10mbit}
`, check: func(t *testing.T, c Config) {
			l := c.Links[0]
			if l.Both.Delay.D() != 10*time.Millisecond || l.BToA.Rate != 10_000_000 || l.AToB != nil {
				t.Fatalf("got %+v", l)
			}
			p := l.BToA.params()
			if p.QueueBytes != 125000 || p.Loss != 0 {
				t.Fatalf("b_to_a params %+v", p)
			}
		}},
		{name: "burst loss defaults", yaml: `
nodes: [{name: a}, {name: b}]
links: [{a: a, b: b, both: {burst_loss: {p: 0.01, r: 0.25}}}]
`, check: func(t *testing.T, c Config) {
			ge := c.Links[0].Both.params().Burst
			if ge == nil || ge.LossBad != 1 || ge.LossGood != 0 {
				t.Fatalf("burst %+v", ge)
			}
		}},
		{name: "unknown key", yaml: "nodes: [{name: a}, {name: b}]\nlinks: [{a: a, b: b, both: {delya: 5ms}}]\n",
			wantErr: []string{"world.yaml:2:"}},
		{name: "all problems at once", yaml: `
subnet: 8.8.8.0/24
nodes: [{name: a}, {name: a}]
links: [{a: a, b: c, both: {loss: 2, jitter: 5ms, queue: 10}}]
`, wantErr: []string{"private range", "duplicate", `"c": no such node`, "loss 2", "jitter", "need a rate"}},
		{name: "address outside subnet", yaml: "nodes: [{name: a, address: 10.98.0.1}, {name: b}]\n",
			wantErr: []string{"not a host address"}},
		{name: "bad rate", yaml: "nodes: [{name: a}, {name: b}]\nlinks: [{a: a, b: b, both: {rate: fast}}]\n",
			wantErr: []string{"rate"}},
		{name: "sysctl outside net", yaml: "sysctl: {kernel.panic: \"1\"}\nnodes: [{name: a, sysctl: {net.core.rmem_max: \"1\"}}, {name: b}]\n",
			wantErr: []string{`"kernel.panic"`, `"net.core.rmem_max"`}},
		{name: "link twice", yaml: "nodes: [{name: a}, {name: b}]\nlinks: [{a: a, b: b}, {a: b, b: a}]\n",
			wantErr: []string{"already linked"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			err := config.Decode("world.yaml", []byte(tc.yaml), &c)
			if len(tc.wantErr) > 0 {
				if err == nil {
					t.Fatal("no error")
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q lacks %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}

func TestParseRate(t *testing.T) {
	for in, want := range map[string]Rate{"100mbit": 100e6, "1.5gbit": 1.5e9, "64kbit": 64e3, "9600": 9600, "2 Mbit": 2e6} {
		if got, err := ParseRate(in); err != nil || got != want {
			t.Errorf("ParseRate(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "fast", "10mb", "-1mbit"} {
		if _, err := ParseRate(bad); err == nil {
			t.Errorf("ParseRate(%q) accepted", bad)
		}
	}
}

// TestCommittedWorlds loads every world shipped in ../worlds.
func TestCommittedWorlds(t *testing.T) {
	files, _ := filepath.Glob("../worlds/*.yaml")
	if len(files) == 0 {
		t.Fatal("no worlds committed")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			c, err := Load(f)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := New(c, Deps{}); err != nil {
				t.Fatal(err)
			}
		})
	}
	if _, err := os.Stat("../worlds/standard.yaml"); err != nil {
		t.Fatal(err)
	}
}
