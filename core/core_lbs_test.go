package core_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/longlink/longlink/core"
	"github.com/longlink/longlink/core/callsvc"
	"github.com/longlink/longlink/core/gateway"
	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/link"
	"github.com/longlink/longlink/core/service"
	"github.com/longlink/longlink/lbs"
	"github.com/longlink/longlink/lbs/nodeclient"
	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/pkg/turncred"
)

// A core node that runs the call service and reports to the LBS signs TURN
// credentials with the LBS's secrets: the configured one until the LBS's
// set arrives, then the oldest live LBS secret, following a rotation.
func TestCallSecretsFromLBS(t *testing.T) {
	if os.Getenv("LONGLINK_INTEGRATION") == "" {
		t.Skip("integration test: set LONGLINK_INTEGRATION=1")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const cfgSecret, s1, s2 = "core-configured-secret-0123456789", "lbs-turn-secret-one-0123456789", "lbs-turn-secret-two-0123456789"

	// a real single-member LBS with the core gateway as an entry point
	lcfg, err := lbs.DevConfig(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	lcfg.ClientListen, lcfg.AdminListen, lcfg.RaftListen = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	lcfg.DNS.Listen = ""
	lcfg.Cluster.HeartbeatTimeout = config.Duration(300 * time.Millisecond)
	lcfg.Cluster.ElectionTimeout = config.Duration(300 * time.Millisecond)
	lcfg.Cluster.LeaderLease = config.Duration(200 * time.Millisecond)
	l, err := lbs.New(lcfg, lbs.Deps{Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Shutdown(context.Background()) }()
	if err := l.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	doc, err := lbs.DevPolicy("demo", lbs.DevEntryPoint{ID: "core-gw", Kind: "gateway", Link: "127.0.0.1:7710"})
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err = l.ApplyPolicy(ctx, doc, "test"); err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: l.CAPool()}}}
	admin := func(method, path, body string) {
		t.Helper()
		req, _ := http.NewRequest(method, "https://"+l.AdminAddr().String()+path, bytes.NewReader([]byte(body)))
		req.Header.Set("Authorization", "Bearer "+lcfg.AdminToken.Reveal())
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s %s: %s: %s", method, path, resp.Status, b)
		}
	}

	key, err := link.GenerateKey("k1")
	if err != nil {
		t.Fatal(err)
	}
	cfg := core.Default()
	cfg.DataDir = t.TempDir()
	cfg.DebugListen = ""
	cfg.Roles = core.Roles{Services: true, Gateway: true, Call: true}
	cfg.Bus.Listen = ""
	cfg.Gateway.Listen = "127.0.0.1:0"
	cfg.Gateway.Keys = []gateway.KeyConfig{{ID: key.ID, PrivateKey: config.NewSecret(link.EncodeKey(key.Private))}}
	cfg.Service.Apps = []service.AppConfig{{AppKey: "demo", Secret: config.NewSecret("lbs-call-app-secret-0123"),
		Devices: imapi.DevicesKickSameType, Heartbeat: config.Duration(30 * time.Second)}}
	cfg.Call.Secrets = []turncred.Secret{{ID: "cfg", Value: config.NewSecret(cfgSecret)}}
	cfg.Call.Servers = []callsvc.ServerConfig{{Site: "local", URLs: []string{"turn:127.0.0.1:3478?transport=udp"}}}
	cfg.LBS = nodeclient.Config{Servers: []string{"https://" + l.AdminAddr().String()}, Node: "core-gw",
		Token: lcfg.NodeToken, RootCAs: l.CAPool(), Interval: config.Duration(50 * time.Millisecond)}
	node, err := core.New(cfg, core.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if err := node.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = node.Shutdown(context.Background()) }()

	// signedWith reports whether credentials the node issues now verify
	// with secret alone.
	signedWith := func(secret string) bool {
		c, err := node.Call().Credentials(ctx, "demo", "alice", "127.0.0.1", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		k, _ := turncred.NewKeyring([]turncred.Secret{{ID: "x", Value: config.NewSecret(secret)}})
		_, _, err = k.Verify(c.Username, c.Password, time.Now())
		return err == nil
	}
	eventually := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatal(what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	time.Sleep(200 * time.Millisecond) // several beats with no secret on the LBS
	if !signedWith(cfgSecret) {
		t.Fatal("not signing with the configured secret while the LBS has none")
	}
	admin("POST", "/v1/turn-secrets", `{"id":"t1","secret":"`+s1+`"}`)
	eventually("never signed with the LBS secret t1", func() bool { return signedWith(s1) })
	// rotation: the new secret is added first; the oldest stays current
	admin("POST", "/v1/turn-secrets", `{"id":"t2","secret":"`+s2+`"}`)
	time.Sleep(300 * time.Millisecond)
	if !signedWith(s1) {
		t.Fatal("signing switched to t2 before t1 was removed")
	}
	admin("DELETE", "/v1/turn-secrets/t1", "")
	eventually("never signed with t2 after t1's removal", func() bool { return signedWith(s2) })
	if signedWith(s1) {
		t.Fatal("still signing with the removed secret")
	}
}
