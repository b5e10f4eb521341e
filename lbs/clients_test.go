package lbs

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/longlink/longlink/lbs/lbsapi"
	"github.com/longlink/longlink/lbs/lbsclient"
	"github.com/longlink/longlink/lbs/nodeclient"
	"github.com/longlink/longlink/pkg/config"
)

func deadAddr(t *testing.T) string {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	a := ln.Addr().String()
	ln.Close()
	return "http://" + a
}

func TestLBSClient(t *testing.T) {
	l := startSingle(t)
	live := "http://" + l.ClientAddr().String()
	cache := filepath.Join(t.TempDir(), "lbs-cache.json")
	ctx := context.Background()

	// slow first server: the staggered race answers from the next one
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(3 * time.Second):
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	c, err := lbsclient.New(lbsclient.Config{Servers: []string{slow.URL, deadAddr(t), live}, AppKey: "demo", SDK: "5.0.0",
		CacheFile: cache, Stagger: 100 * time.Millisecond}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	a, err := c.Resolve(ctx)
	if err != nil || a.Source != "lbs" || len(a.Link) == 0 {
		t.Fatalf("resolve: %+v %v", a, err)
	}
	if d := time.Since(t0); d > 1500*time.Millisecond {
		t.Fatalf("race took %v", d)
	}
	// a new client with every LBS dead uses the persisted answer at once
	c2, _ := lbsclient.New(lbsclient.Config{Servers: []string{deadAddr(t)}, AppKey: "demo", CacheFile: cache}, nil, nil)
	a, err = c2.Resolve(ctx)
	if err != nil || a.Source != "cache" || a.Link[0].ID == "" {
		t.Fatalf("cache: %+v %v", a, err)
	}
	c2.Wait()
	// nothing cached, LBS dead: default link, else ErrLBSUnreachable
	c3, _ := lbsclient.New(lbsclient.Config{Servers: []string{deadAddr(t)}, AppKey: "demo", DefaultLink: "127.0.0.1:7710"}, nil, nil)
	a, err = c3.Resolve(ctx)
	if err != nil || a.Source != "default" || a.Link[0].Port != 7710 {
		t.Fatalf("default: %+v %v", a, err)
	}
	c4, _ := lbsclient.New(lbsclient.Config{Servers: []string{deadAddr(t), deadAddr(t)}, AppKey: "demo"}, nil, nil)
	if _, err = c4.Resolve(ctx); !errors.Is(err, lbsclient.ErrLBSUnreachable) {
		t.Fatalf("unreachable: %v", err)
	}
	// Connect: none reachable → ErrNoEntryPointReachable; one listening → it wins
	d := &net.Dialer{Timeout: 500 * time.Millisecond}
	dead := lbsapi.Answer{Link: []lbsapi.Endpoint{{ID: "a", Host: "127.0.0.1", Port: 1}, {ID: "b", Host: "127.0.0.1", Port: 2}}}
	if _, _, err := c.Connect(ctx, &dead, func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }); !errors.Is(err, lbsclient.ErrNoEntryPointReachable) {
		t.Fatalf("connect dead: %v", err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	mixed := lbsapi.Answer{Link: []lbsapi.Endpoint{{ID: "a", Host: "127.0.0.1", Port: 1}, {ID: "live", Host: "127.0.0.1", Port: port}}}
	conn, ep, err := c.Connect(ctx, &mixed, func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) })
	if err != nil || ep.ID != "live" {
		t.Fatalf("connect: %v %+v", err, ep)
	}
	conn.Close()
}

func TestNodeClient(t *testing.T) {
	l := startSingle(t)
	admin := newAdmin(t, l, testAdminToken)
	// a node token bound to edge-fra
	var tok struct{ Token string }
	if code := admin.json("POST", "/v1/tokens", []byte(`{"id":"fra","kind":"node","node":"edge-fra"}`), &tok); code != 200 {
		t.Fatal(code)
	}
	nc, err := nodeclient.New(nodeclient.Config{Servers: []string{"https://" + deadAddr(t)[len("http://"):], "https://" + l.AdminAddr().String()},
		Node: "edge-fra", Token: config.NewSecret(tok.Token), RootCAs: l.CAPool(), Interval: config.Duration(50 * time.Millisecond)},
		nodeclient.Deps{Load: func() nodeclient.Load { return nodeclient.Load{Connections: 3, CPU: 0.1} }})
	if err != nil {
		t.Fatal(err)
	}
	nc.Start(context.Background())
	deadline := time.Now().Add(5 * time.Second)
	for l.fsm.Current().State.Health["edge-fra"].State != "up" {
		if time.Now().After(deadline) {
			t.Fatal("node never came up")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := nc.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if l.fsm.Current().State.Drained["edge-fra"] != "node:edge-fra" {
		t.Fatal("shutdown did not drain")
	}
	// the token is bound: reporting as another node is refused
	other, _ := nodeclient.New(nodeclient.Config{Servers: []string{"https://" + l.AdminAddr().String()}, Node: "edge-sg",
		Token: config.NewSecret(tok.Token), RootCAs: l.CAPool()}, nodeclient.Deps{})
	if err := other.Drain(context.Background()); err == nil {
		t.Fatal("bound token reported for another node")
	}
}
