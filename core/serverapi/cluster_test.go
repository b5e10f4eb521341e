package serverapi_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/longlink/longlink/core/imapi"

	"github.com/longlink/longlink/core/internal/buswire"
	"github.com/longlink/longlink/core/ratelimit"
	"github.com/longlink/longlink/core/route"
	"github.com/longlink/longlink/core/serverapi"
	"github.com/longlink/longlink/lbs/lbsapi"
	"github.com/longlink/longlink/pkg/metricstest"
)

// node starts one more service node's server API on its own bus
// connection (the env's services and store behind it).
func (e *env) node(n route.Node, cfg serverapi.Config, limits *ratelimit.Limiter) (*serverapi.Server, *prometheus.Registry) {
	e.t.Helper()
	nc, err := e.nats.Connect(e.t.Name())
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(nc.Close)
	reg := prometheus.NewRegistry()
	srv, err := serverapi.New(cfg, serverapi.Deps{Service: e.svc, Store: e.st, NATS: nc, JetStream: e.nats.JetStream(),
		Node: n, Limits: limits, Registerer: reg})
	if err != nil {
		e.t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	return srv, reg
}

func (e *env) stop(srv *serverapi.Server) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		e.t.Fatal(err)
	}
}

// signed returns a request edit that gives every try the same signature
// (nonce and timestamp), as an attacker replaying a captured request does.
func signed(nonce string, at time.Time, body []byte) func(*http.Request) {
	return func(r *http.Request) { serverapi.Sign(r, appKey, secret, nonce, at, body) }
}

// TestReplayRefusedByEveryNode: a request accepted once is refused as a
// replay by another node and by a node started afterwards (a restart),
// because the nonce is claimed in the engine, not in a process.
func TestReplayRefusedByEveryNode(t *testing.T) {
	e := newEnv(t)
	other, _ := e.node(route.Node{Cluster: buswire.DefaultCluster}, e.cfg, nil)
	at := time.Now()
	body := []byte(`{"account":"replayed"}`)
	if status, b := e.do(http.MethodPost, "/v1/users", body, signed("n-once", at, body)); status != http.StatusOK {
		t.Fatalf("first use: %d %s", status, b)
	}
	// Only the other node left: it refuses.
	e.stop(e.srv)
	if status, b := e.do(http.MethodPost, "/v1/users", body, signed("n-once", at, body)); status != http.StatusUnauthorized || !strings.Contains(string(b), "nonce already used") {
		t.Fatalf("replay on another node: %d %s", status, b)
	}
	// A node that starts afterwards (a restart) refuses too.
	e.stop(other)
	e.node(route.Node{Cluster: buswire.DefaultCluster}, e.cfg, nil)
	if status, b := e.do(http.MethodPost, "/v1/users", body, signed("n-once", at, body)); status != http.StatusUnauthorized || !strings.Contains(string(b), "nonce already used") {
		t.Fatalf("replay after a restart: %d %s", status, b)
	}
}

// TestNonceStoreFull: a bucket full of live nonces refuses new requests
// (429) rather than forget one.
func TestNonceStoreFull(t *testing.T) {
	e := newEnv(t)
	e.stop(e.srv)
	cfg := e.cfg
	cfg.NonceStoreBytes = 1 << 20
	e.node(route.Node{Cluster: buswire.DefaultCluster}, cfg, nil)
	kv, err := e.nats.JetStream().KeyValue(context.Background(), cfg.NonceBucket)
	if err != nil {
		t.Fatal(err)
	}
	// Fill it to the last byte: large values, then ever smaller ones.
	n := 0
	for size := 64 << 10; size >= 1; size /= 4 {
		for ; ; n++ {
			if _, err := kv.Put(context.Background(), fmt.Sprintf("filler.%d", n), make([]byte, size)); err != nil {
				break
			}
		}
	}
	status, b := e.do(http.MethodPost, "/v1/users", serverapi.UserReq{Account: "late"}, nil)
	if status != http.StatusTooManyRequests || !strings.Contains(string(b), "too many requests in the signing window") {
		t.Fatalf("full: %d %s", status, b)
	}
}

// TestAppRateAcrossNodes: two nodes share the app's budget: in one window
// the app gets app_rate requests in all, whichever node serves them.
func TestAppRateAcrossNodes(t *testing.T) {
	e := newEnv(t)
	e.stop(e.srv)
	var clock atomic.Int64
	clock.Store(time.Now().Truncate(time.Second).Add(10 * time.Millisecond).UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	cfg := e.cfg
	cfg.AppRate = 5
	for range 2 {
		lim, err := ratelimit.New(ratelimit.Default(), ratelimit.Deps{JetStream: e.nats.JetStream(), Now: now})
		if err != nil {
			t.Fatal(err)
		}
		if err := lim.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		e.node(route.Node{Cluster: buswire.DefaultCluster}, cfg, lim)
	}
	count := func() (ok, limited int) {
		for range 12 {
			status, b := e.do(http.MethodGet, "/v1/users/nobody", nil, nil)
			switch {
			case status == http.StatusNotFound:
				ok++
			case status == http.StatusTooManyRequests && errCode(t, b) == imapi.ErrRateLimited:
				limited++
			default:
				t.Fatalf("status %d %s", status, b)
			}
		}
		return
	}
	if ok, limited := count(); ok != 5 || limited != 7 {
		t.Fatalf("window 1: %d passed, %d limited; want 5 and 7", ok, limited)
	}
	clock.Add(int64(time.Second))
	if ok, _ := count(); ok != 5 {
		t.Fatalf("window 2: %d passed", ok)
	}
}

// TestFrontRoutes: the front sends a dedicated app's requests to its own
// cluster only (503 with the reason when it has no live node), an app that
// a grayscale rule moves to the nodes of its version, and falls back to the
// stable nodes while that version has none.
func TestFrontRoutes(t *testing.T) {
	e := newEnv(t)
	// "dedicated" maps to cluster ded, which has no node: the shared
	// cluster's nodes never see its requests.
	req, _ := http.NewRequest(http.MethodGet, e.base+"/v1/users/x", nil)
	serverapi.Sign(req, "dedicated", "whatever-secret", "n1", time.Now(), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("dedicated without nodes: %d", resp.StatusCode)
	}
	// The whole app moves to version 2 (no node yet: fallback).
	if err := e.routes.SetGrayscale(lbsapi.Grayscale{Rules: []lbsapi.GrayscaleRule{{Name: "v2", Version: "2", AppKeys: []string{appKey}, Percent: 100}}}); err != nil {
		t.Fatal(err)
	}
	e.ok(http.MethodPost, "/v1/users", serverapi.UserReq{Account: "before-v2"}, nil)
	_, reg := e.node(route.Node{Cluster: buswire.DefaultCluster, Version: "2", Canary: true}, e.cfg, nil)
	e.ok(http.MethodPost, "/v1/users", serverapi.UserReq{Account: "on-v2"}, nil)
	if n := metricstest.Value(t, reg, "longlink_serverapi_requests_total", "route", "POST /v1/users"); n != 1 {
		t.Fatalf("version 2 node served %v requests, want 1", n)
	}
	// Rollback.
	if err := e.routes.SetGrayscale(lbsapi.Grayscale{}); err != nil {
		t.Fatal(err)
	}
	e.ok(http.MethodPost, "/v1/users", serverapi.UserReq{Account: "after-v2"}, nil)
	if n := metricstest.Value(t, reg, "longlink_serverapi_requests_total", "route", "POST /v1/users"); n != 1 {
		t.Fatalf("after the rollback the version 2 node served %v requests", n)
	}
}
