package sdk

import (
	"context"
	"encoding/json"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/link"
	"github.com/longlink/longlink/core/link/linkquic"
	"github.com/longlink/longlink/lbs/lbsapi"
)

// serveLink answers Link logins on ln with the session id "s-"+name and
// keeps each connection open until the client closes it.
func serveLink(t *testing.T, ln net.Listener, ring *link.KeyRing, name string) {
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer nc.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				c, err := link.Server(ctx, nc, ring, link.Limits{})
				cancel()
				if err != nil {
					return
				}
				for {
					f, err := c.ReadFrame()
					if err != nil {
						return
					}
					body := []byte(`{}`)
					if f.Op == imapi.OpLogin {
						body, _ = json.Marshal(imapi.LoginResp{SessionID: "s-" + name, HeartbeatSec: 30})
					}
					if f.Op == imapi.OpConvList {
						body = []byte(`{"conversations":[]}`)
					}
					if c.WriteFrame(link.Frame{Op: f.Op, Seq: f.Seq, Flags: link.FlagResponse, Body: body}) != nil {
						return
					}
				}
			}()
		}
	}()
}

// TestQUICRacedAgainstTCP: an entry point's Link over QUIC address is
// raced before its TCP address. QUIC wins when it answers; where UDP is
// blocked (packets vanish, nothing answers) TCP wins after the QUIC head
// start, not after the race stagger or QUIC's handshake timeout.
func TestQUICRacedAgainstTCP(t *testing.T) {
	key, err := link.GenerateKey("k1")
	if err != nil {
		t.Fatal(err)
	}
	ring := link.NewKeyRing(key)
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveLink(t, tcp, ring, "tcp")
	quic, err := linkquic.Listen("127.0.0.1:0", nil, linkquic.Options{})
	if err != nil {
		t.Fatal(err)
	}
	serveLink(t, quic, ring, "quic")
	blocked, err := net.ListenPacket("udp", "127.0.0.1:0") // never read: UDP blocked
	if err != nil {
		t.Fatal(err)
	}
	defer blocked.Close()

	config := func(addrs ...string) Config {
		return Config{Addresses: addrs, ServerKeys: map[string][]byte{key.ID: key.Public},
			AppKey: "app", Account: "alice", Token: "t", RaceDelay: time.Hour}
	}
	t.Run("quic answers", func(t *testing.T) {
		cfg := config(linkquic.Scheme+quic.Addr().String(), tcp.Addr().String())
		cfg.QUICHeadStart = 5 * time.Second // the machine may be slow: no race here
		c, _ := startClient(t, cfg)
		if c.SessionID() != "s-quic" {
			t.Fatalf("session %q, want over QUIC", c.SessionID())
		}
	})
	t.Run("udp blocked", func(t *testing.T) {
		cfg := config(linkquic.Scheme+blocked.LocalAddr().String(), tcp.Addr().String())
		cfg.QUICHeadStart = 100 * time.Millisecond
		start := time.Now()
		c, _ := startClient(t, cfg)
		took := time.Since(start)
		if c.SessionID() != "s-tcp" {
			t.Fatalf("session %q, want over TCP", c.SessionID())
		}
		if took < cfg.QUICHeadStart || took > 3*time.Second {
			t.Fatalf("connected after %v: want the head start (%v) and a TCP handshake", took, cfg.QUICHeadStart)
		}
	})
}

// TestCandidates: an LBS answer's QUIC addresses come right before the same
// entry point's TCP address; QUIC-only entry points last.
func TestCandidates(t *testing.T) {
	a := &lbsapi.Answer{
		Link: []lbsapi.Endpoint{{ID: "e1", Host: "192.0.2.1", Port: 7720}, {ID: "e2", Host: "192.0.2.2", Port: 7720},
			{ID: "gw", Host: "192.0.2.9", Port: 7710, Fallback: true}, {ID: "bad"}},
		LinkQUIC: []lbsapi.Endpoint{{ID: "e2", Host: "192.0.2.2", Port: 7724}, {ID: "q", Host: "2001:db8::1", Port: 7724},
			{ID: "e1", Host: "192.0.2.1", Port: 7724}},
	}
	want := []string{"quic://192.0.2.1:7724", "192.0.2.1:7720", "quic://192.0.2.2:7724", "192.0.2.2:7720",
		"192.0.2.9:7710", "quic://[2001:db8::1]:7724"}
	if got := candidates(a); !slices.Equal(got, want) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
}
