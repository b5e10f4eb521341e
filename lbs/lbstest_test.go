package lbs

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/longlink/longlink/geo"
	"github.com/longlink/longlink/geo/mmdbbuild"
	"github.com/longlink/longlink/pkg/config"
)

const testAdminToken = "test-admin-token-0123456789"
const testNodeToken = "test-node-token-0123456789"

func geoFiles(t testing.TB, dir string) geo.Config {
	t.Helper()
	os.MkdirAll(dir, 0o700)
	city, asn := filepath.Join(dir, "city.mmdb"), filepath.Join(dir, "asn.mmdb")
	if err := mmdbbuild.BuildFile("../tools/geodb/testdata/world.csv", city, asn); err != nil {
		t.Fatal(err)
	}
	g := geo.Default()
	g.CityDB, g.ASNDB = city, asn
	return g
}

// testConfig is a member on free loopback ports.
func testConfig(t testing.TB, id, dir, caDir string) Config {
	c := Default()
	c.NodeID = id
	c.DataDir = dir
	c.ClientListen, c.AdminListen, c.RaftListen = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	c.DNS.Listen = "127.0.0.1:0"
	c.DNS.Sockets = 2
	c.DNS.Zone = "lbs.test."
	c.TLS.CADir = caDir
	c.AdminToken = config.NewSecret(testAdminToken)
	c.NodeToken = config.NewSecret(testNodeToken)
	c.TrustedProxies = []string{"127.0.0.0/8"}
	c.Geo = geoFiles(t, dir)
	c.Health.Interval = config.Duration(100 * time.Millisecond)
	c.Cluster.HeartbeatTimeout = config.Duration(300 * time.Millisecond)
	c.Cluster.ElectionTimeout = config.Duration(300 * time.Millisecond)
	c.Cluster.LeaderLease = config.Duration(200 * time.Millisecond)
	return c
}

func startSingle(t testing.TB, adjust ...func(*Config)) *LBS {
	t.Helper()
	return startSingleWith(t, Deps{Registerer: prometheus.NewRegistry()}, adjust...)
}

// startSingleWith is startSingle with the member's dependencies (a
// registry the test reads).
func startSingleWith(t testing.TB, deps Deps, adjust ...func(*Config)) *LBS {
	t.Helper()
	dir := t.TempDir()
	cfg := testConfig(t, "lbs1", dir, filepath.Join(dir, "ca"))
	cfg.Cluster.Bootstrap = true
	cfg.InitialPolicy = "testdata/policy.yaml"
	for _, f := range adjust {
		f(&cfg)
	}
	l, err := New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		l.Shutdown(ctx)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.WaitReady(ctx); err != nil { // with the initial policy in
		t.Fatal(err)
	}
	return l
}

type adminClient struct {
	t     testing.TB
	base  string
	token string
	hc    *http.Client
}

func newAdmin(t testing.TB, l *LBS, token string) *adminClient {
	return &adminClient{t: t, base: "https://" + l.AdminAddr().String(), token: token,
		hc: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: l.CAPool()}}}}
}

func (a *adminClient) do(method, path string, body []byte) (int, []byte) {
	a.t.Helper()
	req, _ := http.NewRequest(method, a.base+path, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+a.token)
	resp, err := a.hc.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (a *adminClient) json(method, path string, body []byte, out any) int {
	a.t.Helper()
	code, b := a.do(method, path, body)
	if out != nil && code == 200 {
		if err := json.Unmarshal(b, out); err != nil {
			a.t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
	return code
}

func httpGet(t testing.TB, url string, hdr map[string]string) (int, []byte) {
	req, _ := http.NewRequest("GET", url, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func mustRead(t testing.TB, p string) []byte {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var _ = fmt.Sprintf
var _ = net.Dial
var _ = strings.Contains
