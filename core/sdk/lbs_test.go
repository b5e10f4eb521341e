package sdk

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/longlink/longlink/lbs/lbsclient"
)

// closedAddr is a loopback address where nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// Every LBS unreachable: the SDK falls back to the default link, and when
// that fails too it reports an error that says both (SCENARIOS.md §5).
func TestLBSUnreachableAndDefaultLinkDown(t *testing.T) {
	lc, err := lbsclient.New(lbsclient.Config{
		Servers:     []string{"http://" + closedAddr(t), "http://" + closedAddr(t)},
		AppKey:      "app",
		DefaultLink: closedAddr(t),
		Timeout:     300 * time.Millisecond,
	}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Resolver: LBSResolver(lc), ServerKeys: map[string][]byte{"k1": make([]byte, 32)},
		AppKey: "app", Account: "alice", Token: "t",
		ConnectTimeout: 2 * time.Second, BackoffMin: time.Second, BackoffMax: time.Second}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.Start()
	defer c.Close()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case ev := <-c.Events():
			if ev.Kind != EventState || ev.Err == nil {
				continue
			}
			if !errors.Is(ev.Err, ErrUnreachable) || !errors.Is(ev.Err, lbsclient.ErrLBSUnreachable) {
				t.Fatalf("error %v: want both 'no entry point reachable' and 'lbs unreachable'", ev.Err)
			}
			return
		case <-deadline:
			t.Fatal("no connection failure reported")
		}
	}
}

// The LBS is unreachable but the default link works: the client connects
// without any error reaching the app.
func TestLBSResolverUsesDefaultLink(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	lc, err := lbsclient.New(lbsclient.Config{
		Servers: []string{"http://" + closedAddr(t)}, AppKey: "app", DefaultLink: ln.Addr().String(),
		Timeout: 300 * time.Millisecond,
	}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := LBSResolver(lc)(context.Background())
	if len(addrs) != 1 || addrs[0] != ln.Addr().String() {
		t.Fatalf("addresses %v, want the default link", addrs)
	}
	if !errors.Is(err, lbsclient.ErrLBSUnreachable) {
		t.Fatalf("err %v, want ErrLBSUnreachable alongside the default link", err)
	}
}
