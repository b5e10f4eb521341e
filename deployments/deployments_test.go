// Package deployments holds operational files: example configs, systemd
// units, alert rules. This test keeps them true to the code: example configs
// decode strictly into the role's Config, and alert rules name metrics that
// exist.
package deployments

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/longlink/longlink/core"
	"github.com/longlink/longlink/pkg/config"
)

func TestCoreExampleConfigs(t *testing.T) {
	// Secrets referenced as file: must exist for the config to load; the
	// test supplies throwaway ones at the documented paths' names.
	files, _ := filepath.Glob("core/*.yaml")
	if len(files) == 0 {
		t.Fatal("no example core configs")
	}
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			text := redirectSecrets(t, string(data))
			cfg := core.Default()
			if err := config.Decode(f, []byte(text), &cfg); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// redirectSecrets points every file: secret at a temporary file, so the
// example can keep production paths.
func redirectSecrets(t *testing.T, text string) string {
	dir := t.TempDir()
	re := regexp.MustCompile(`file:(/etc/longlink/secrets/[A-Za-z0-9._-]+)`)
	return re.ReplaceAllStringFunc(text, func(m string) string {
		name := filepath.Base(strings.TrimPrefix(m, "file:"))
		p := filepath.Join(dir, name)
		val := "secret-" + name
		switch {
		case strings.HasPrefix(name, "link-"):
			val = "/aPQu1201sDEWo+DlcPWD6WispfRILilNxSkCGtYUlI=" // a valid X25519 key
		case strings.HasPrefix(name, "token-"):
			val = "CSn9PFeAnhPYWqj0opWayEq1bgAKKBL7LypuUCyhHcI=" // a valid Ed25519 seed
		case name == "postgres-dsn":
			val = "postgres://longlink@127.0.0.1:5432/longlink"
		case strings.HasPrefix(name, "apns-"):
			val = testAPNsKey(t)
		case strings.HasPrefix(name, "fcm-"):
			val = testServiceAccount(t)
		}
		if err := os.WriteFile(p, []byte(val+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return "file:" + p
	})
}

func TestAlertRulesNameRealMetrics(t *testing.T) {
	known := metricNames(t)
	data, err := os.ReadFile("prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`longlink_[a-z_]+`)
	rules := 0
	for _, g := range doc.Groups {
		for _, r := range g.Rules {
			rules++
			if r.Alert == "" || r.Expr == "" {
				t.Errorf("group %s: rule without alert name or expr", g.Name)
			}
			for _, m := range re.FindAllString(r.Expr, -1) {
				if !known[m] {
					t.Errorf("alert %s uses %s, which no metrics.go defines", r.Alert, m)
				}
			}
		}
	}
	if rules == 0 {
		t.Fatal("no alert rules")
	}
}

// metricNames collects the metric names defined in the repository's
// metrics.go files.
func metricNames(t *testing.T) map[string]bool {
	names := map[string]bool{}
	re := regexp.MustCompile(`"(longlink_[a-z_]+)"`)
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "node_modules" || d.Name() == ".git") {
			return filepath.SkipDir
		}
		if !strings.HasSuffix(d.Name(), "metrics.go") { // metrics.go, lanemetrics.go
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			names[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func TestGrafanaDashboardNamesRealMetrics(t *testing.T) {
	known := metricNames(t)
	data, err := os.ReadFile("grafana/longlink.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatal(err)
	}
	if len(dash.Panels) == 0 {
		t.Fatal("no panels")
	}
	re := regexp.MustCompile(`longlink_[a-z_]+`)
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			for _, m := range re.FindAllString(tg.Expr, -1) {
				// Histograms are queried through their series.
				base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(m, "_bucket"), "_sum"), "_count")
				if !known[base] {
					t.Errorf("panel %q uses %s, which no metrics.go defines", p.Title, m)
				}
			}
		}
	}
}

func TestSystemdUnitRunsCheckConfigFirst(t *testing.T) {
	b, err := os.ReadFile("systemd/longlink@.service")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{"ExecStartPre=/usr/local/bin/longlink %i -check-config", "ExecStart=/usr/local/bin/longlink %i -config", "KillSignal=SIGTERM"} {
		if !strings.Contains(s, want) {
			t.Errorf("unit lacks %q", want)
		}
	}
}

// testAPNsKey is a throwaway .p8 key (PKCS#8 P-256).
func testAPNsKey(t *testing.T) string {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

// testServiceAccount is a throwaway Google service account JSON.
func testServiceAccount(t *testing.T) string {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	b, _ := json.Marshal(map[string]string{
		"type": "service_account", "project_id": "acme-chat", "client_email": "push@acme-chat.iam.gserviceaccount.com",
		"private_key": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"token_uri":   "https://oauth2.googleapis.com/token",
	})
	return string(b)
}

// The chart's autoscaler scales service nodes on capacity metrics the
// service nodes really export: a renamed metric would leave the HPA
// without a signal, and nothing else would say so.
func TestAutoscalerNamesRealCapacityMetrics(t *testing.T) {
	known := metricNames(t)
	tmpl, err := os.ReadFile("helm/longlink/templates/core.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ms := regexp.MustCompile(`metric: \{name: ([^}\s]+)\}`).FindAllStringSubmatch(string(tmpl), -1)
	if len(ms) == 0 {
		t.Fatal("the chart has no HorizontalPodAutoscaler metric")
	}
	for _, m := range ms {
		if !known[m[1]] {
			t.Errorf("the HPA scales on %s, which no metrics.go defines", m[1])
		}
	}
}
