package clustertest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// LBS is a one-member `longlink lbs` cluster that gateways report to (and
// take their grayscale rules from), operated through its admin API.
type LBS struct {
	*Proc
	// AdminURL is https://host:port; CAFile verifies it.
	AdminURL, CAFile string
	AdminToken       string
	// NodeToken authenticates the gateways' reports.
	NodeToken, NodeTokenFile string
	DebugAddr                string
	// ClientAddr serves the clients' queries (GET /v1/query); DNSAddr the
	// DNS answers (UDP and TCP) for zone DNSZone.
	ClientAddr, DNSAddr, DNSZone string

	hc *http.Client
}

// StartLBS starts an LBS member with policy (a routing document, YAML) and
// waits until it answers.
func (e *Env) StartLBS(policy string) *LBS {
	e.t.Helper()
	dir := e.MkDir("lbs")
	host := e.Site.host()
	policyFile := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyFile, []byte(policy), 0o600); err != nil {
		e.t.Fatal(err)
	}
	admin, adminFile := e.Secret(dir, "admin-token")
	node, nodeFile := e.Secret(dir, "node-token")
	l := &LBS{AdminURL: "https://" + e.Addr(host), CAFile: filepath.Join(dir, "ca", "ca.pem"), AdminToken: admin,
		NodeToken: node, NodeTokenFile: nodeFile, DebugAddr: e.Addr(host), ClientAddr: e.Addr(host), DNSAddr: e.Addr(host),
		DNSZone: "lbs.longlink.test."}
	cfg := map[string]any{
		"node_id": "lbs-1", "data_dir": filepath.Join(dir, "data"),
		"client_listen": l.ClientAddr, "admin_listen": strings.TrimPrefix(l.AdminURL, "https://"), "raft_listen": e.Addr(host),
		"cluster":        map[string]any{"bootstrap": true},
		"tls":            map[string]any{"ca_dir": filepath.Join(dir, "ca"), "names": []string{host}},
		"dns":            map[string]any{"listen": l.DNSAddr, "zone": l.DNSZone, "sockets": 1},
		"admin_token":    "file:" + adminFile,
		"node_token":     "file:" + nodeFile,
		"initial_policy": policyFile,
		// Gateways report every 200ms, so rule changes reach them fast.
		"health": map[string]any{"interval": "200ms"},
	}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "lbs.yaml")
	if err := os.WriteFile(cfgFile, b, 0o600); err != nil {
		e.t.Fatal(err)
	}
	l.Proc = e.NewProc(e.Site, "lbs-1", e.Bins.Longlink, "lbs", "-config", cfgFile, "-debug-addr", l.DebugAddr)
	if err := l.Start(); err != nil {
		e.t.Fatal(err)
	}
	err = poll(60*time.Second, func() error {
		select {
		case <-l.Exited():
			return fmt.Errorf("%w: %v", errExited, l.ExitErr())
		default:
		}
		resp, err := http.Get("http://" + l.DebugAddr + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz %d", resp.StatusCode)
		}
		return nil
	})
	if err != nil {
		e.t.Fatalf("clustertest: lbs not ready: %v\n%s", err, l.Tail(30))
	}
	pem, err := os.ReadFile(l.CAFile)
	if err != nil {
		e.t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	l.hc = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	return l
}

// Reporting is the `lbs:` section of a gateway that reports to this LBS
// (as the entry point named like the gateway, which the policy must list).
func (l *LBS) Reporting() map[string]any {
	return map[string]any{
		"servers": []string{l.AdminURL}, "token": "file:" + l.NodeTokenFile,
		"ca_file": l.CAFile, "interval": "200ms",
	}
}

// Admin calls the admin API as the operator; out (may be nil) receives the
// JSON answer. A non-2xx answer is an error carrying the body.
func (l *LBS) Admin(ctx context.Context, method, path string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, l.AdminURL+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+l.AdminToken)
	resp, err := l.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("clustertest: lbs %s %s: %d %s", method, path, resp.StatusCode, bytes.TrimSpace(b))
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}
