package turn

import (
	"crypto/tls"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/pkg/pki"
	"github.com/longlink/longlink/pkg/turncred"
)

// Reload applies secrets, peers, quotas and a renewed certificate to a
// running server, and refuses (changing nothing) a file that changes a key
// only a restart applies.
func TestReload(t *testing.T) {
	dir := t.TempDir()
	ca, err := pki.LoadOrCreateCA(filepath.Join(dir, "ca"), "turn-test")
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "turn.pem"), filepath.Join(dir, "turn-key.pem")
	if err := ca.IssueFiles(certFile, keyFile, "first.turn.test", "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	ts := newTestServer(t, func(c *Config) { c.TLSCertFile, c.TLSKeyFile = certFile, keyFile })
	peer := echoPeer(t, "udp4", "127.0.0.1:0")
	servedName := func() string {
		c, err := tls.Dial("tcp", ts.Addrs().TLS[0].String(), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // test: which certificate is served
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].DNSNames[0]
	}
	if got := servedName(); got != "first.turn.test" {
		t.Fatalf("serves %q", got)
	}
	cur := *ts.live.Load()

	// A new secret replaces the old, loopback peers are closed, one
	// allocation per user, and the certificate was renewed under the same name.
	next := cur
	next.Secrets = []turncred.Secret{{ID: "k2", Value: config.NewSecret(testSecret2)}}
	next.Peers.Allow = nil
	next.Quotas.PerUser = 1
	if err := ca.IssueFiles(certFile, keyFile, "renewed.turn.test", "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	applied, err := ts.Reload(next)
	if err != nil || strings.Join(applied, ",") != "peers.allow,quotas.per_user,secrets" {
		t.Fatalf("reload: %v %v", applied, err)
	}
	if got := servedName(); got != "renewed.turn.test" {
		t.Fatalf("after the reload it serves %q", got)
	}
	if _, err := udpClient(t, ts.Addrs().UDP[0], cred(t, testSecret, "app", "alice", time.Hour)).Allocate(); err == nil {
		t.Fatal("a credential of the removed secret still allocates")
	}
	relay, err := udpClient(t, ts.Addrs().UDP[0], cred(t, testSecret2, "app", "bob", time.Hour)).Allocate()
	if err != nil {
		t.Fatalf("the new secret's credential: %v", err)
	}
	defer relay.Close()
	if _, err := udpClient(t, ts.Addrs().UDP[0], cred(t, testSecret2, "app", "bob", time.Hour)).Allocate(); err == nil {
		t.Fatal("a second allocation for bob despite quotas.per_user 1")
	}
	if err := roundTrip(t, relay, peer.LocalAddr(), "to a loopback peer"); err == nil {
		t.Fatal("a loopback peer is still reachable after peers.allow was emptied")
	}

	// Restart-only keys: refused by name, nothing applied (not even the
	// reloadable change beside them).
	bad := *ts.live.Load()
	bad.Realm = "other"
	bad.UDP = []string{"127.0.0.1:1"}
	bad.Quotas.PerUser = 5
	if _, err := ts.Reload(bad); err == nil || !strings.Contains(err.Error(), "realm: changed") || !strings.Contains(err.Error(), "udp: changed") {
		t.Fatalf("restart-only change: %v", err)
	}
	if ts.live.Load().Quotas.PerUser != 1 || ts.quotas.cfg.PerUser != 1 {
		t.Fatal("a refused reload changed the quotas")
	}
	invalid := *ts.live.Load()
	invalid.Secrets = nil
	if _, err := ts.Reload(invalid); err == nil || !strings.Contains(err.Error(), "secrets") {
		t.Fatalf("invalid config: %v", err)
	}
	if got := testutil.ToFloat64(ts.m.reloads.WithLabelValues("refused")); got != 1 {
		t.Fatalf("refused reloads counted %v, want 1 (the invalid file is refused before)", got)
	}
}
