package weblink

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/longlink/longlink/core/bus"
	"github.com/longlink/longlink/core/gateway"
	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/service"
	"github.com/longlink/longlink/core/store"
	"github.com/longlink/longlink/pkg/config"
)

const testAppKey = "demo"

// testCore is an IM core with its real parts (embedded bus, SQLite store,
// app services, gateway without a Link listener) and WebLink in front.
type testCore struct {
	wl     *WebLink
	gw     *gateway.Gateway
	url    string
	tokens map[string]string
	reg    *prometheus.Registry
}

func testLogger() *slog.Logger {
	if os.Getenv("WEBLINK_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func startCore(t testing.TB, mod func(*Config)) *testCore {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	log := testLogger()
	reg := prometheus.NewRegistry()
	bcfg := bus.Default()
	bcfg.Listen = ""
	bcfg.StoreDir = filepath.Join(dir, "nats")
	b, err := bus.New(bcfg, bus.Deps{Logger: log, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	scfg := store.Default()
	scfg.Path = filepath.Join(dir, "core.db")
	st, err := store.Open(ctx, scfg, store.Deps{Logger: log, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	vcfg := service.Default()
	vcfg.Apps = []service.AppConfig{{AppKey: testAppKey, Secret: config.NewSecret("weblink-test-secret"),
		Devices: imapi.DevicesKickSameType, Heartbeat: config.Duration(30 * time.Second)}}
	svc, err := service.New(vcfg, service.Deps{NATS: b.Conn(), Store: st, Logger: log, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	users, err := service.Seed(ctx, st, testAppKey, []service.SeedUser{{Account: "alice"}, {Account: "bob"}, {Account: "carol"}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	gcfg := gateway.Default()
	gcfg.ID = "gw-weblink-test"
	gcfg.Listen = ""
	gcfg.DrainTime = config.Duration(50 * time.Millisecond)
	gw, err := gateway.New(gcfg, gateway.Deps{NATS: b.Conn(), Registerer: reg, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Start(ctx); err != nil {
		t.Fatal(err)
	}
	c := &testCore{tokens: map[string]string{}, reg: reg, gw: gw}
	var demo []DemoLogin
	for _, u := range users {
		c.tokens[u.Account] = u.Token
		demo = append(demo, DemoLogin{AppKey: testAppKey, Account: u.Account, Token: u.Token})
	}
	cfg := Default()
	cfg.DrainTime = config.Duration(50 * time.Millisecond)
	if mod != nil {
		mod(&cfg)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	wl, err := New(cfg, Deps{Gateway: gw, Logger: log, Registerer: reg, Listener: ln,
		DemoLogins: func(context.Context) ([]DemoLogin, error) { return demo, nil }})
	if err != nil {
		t.Fatal(err)
	}
	if err := wl.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.wl = wl
	c.url = "http://" + wl.Addr().String()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = wl.Shutdown(ctx)
		_ = gw.Shutdown(ctx)
		_ = svc.Shutdown(ctx)
		_ = b.Shutdown(ctx)
		_ = st.Close()
	})
	return c
}
