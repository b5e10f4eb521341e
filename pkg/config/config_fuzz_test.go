package config

import (
	"strings"
	"testing"
)

type fuzzConf struct {
	Name    string            `yaml:"name"`
	Timeout Duration          `yaml:"timeout"`
	Ports   []int             `yaml:"ports"`
	Labels  map[string]string `yaml:"labels"`
	TLS     struct {
		Cert string   `yaml:"cert"`
		Min  Duration `yaml:"min"`
	} `yaml:"tls"`
}

// FuzzDecode: config files (and the bodies reloads read) are operators'
// bytes; whatever they hold, Decode answers with a value or an error that
// names the file, and the key paths it adds never panic on odd YAML
// (anchors, aliases, documents, flow maps).
func FuzzDecode(f *testing.F) {
	for _, s := range []string{"", "name: a\ntimeout: 3s\n", "timeout: 3\n", "tls:\n  cert: x\n  min: 1h\n  bad: 1\n",
		"ports: [1, two]\n", "a: &x {b: *x}\n", "---\n---\nname: b\n", "labels: {a: [1]}\n", "? [a]\n: 1\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var c fuzzConf
		if err := Decode("f.yaml", data, &c); err != nil && !strings.Contains(err.Error(), "f.yaml") {
			t.Fatalf("error without the file's name: %v", err)
		}
	})
}
