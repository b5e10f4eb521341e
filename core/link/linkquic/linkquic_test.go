package linkquic

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/link"
	"github.com/longlink/longlink/pkg/waittest"
)

// TestLinkOverQUIC: the Link handshake and frames over a QUIC stream, the
// server authenticated by its Link key; a reconnect resumes with 0-RTT; a
// client with the wrong key for the id fails the handshake.
func TestLinkOverQUIC(t *testing.T) {
	key, err := link.GenerateKey("k1")
	if err != nil {
		t.Fatal(err)
	}
	ring := link.NewKeyRing(key)
	ln, err := Listen("127.0.0.1:0", nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer nc.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				c, err := link.Server(ctx, nc, ring, link.Limits{})
				if err != nil {
					return
				}
				for {
					f, err := c.ReadFrame()
					if err != nil {
						return
					}
					f.Flags |= link.FlagResponse
					if c.WriteFrame(f) != nil {
						return
					}
				}
			}()
		}
	}()
	d := NewDialer(Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	roundTrip := func() *Conn {
		t.Helper()
		nc, err := d.Dial(ctx, ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c, err := link.Client(ctx, nc, key.ID, key.Public, link.Limits{})
		if err != nil {
			t.Fatalf("handshake: %v", err)
		}
		if err := c.WriteFrame(link.Frame{Op: imapi.OpHeartbeat, Seq: 7, Body: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
		f, err := c.ReadFrame()
		if err != nil || f.Seq != 7 || !f.IsResponse() {
			t.Fatalf("echo: %+v %v", f, err)
		}
		_ = c.Close()
		return nc.(*Conn)
	}
	if first := roundTrip(); first.Used0RTT() {
		t.Fatal("first connection used 0-RTT")
	}
	if again := roundTrip(); !again.Used0RTT() {
		t.Fatal("reconnect did not use 0-RTT")
	}

	other, _ := link.GenerateKey("k1")
	nc, err := d.Dial(ctx, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := link.Client(ctx, nc, other.ID, other.Public, link.Limits{}); err == nil {
		t.Fatal("handshake with the wrong server key succeeded")
	}
}

// TestZeroRTTPerAddress: a dialer keeps a session per address, so that
// alternating between two servers on one host (two ports) resumes each
// with 0-RTT instead of presenting the other's ticket.
func TestZeroRTTPerAddress(t *testing.T) {
	var addrs []string
	for range 2 {
		ln, err := Listen("127.0.0.1:0", nil, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				nc, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer nc.Close()
					b := make([]byte, 1)
					if _, err := nc.Read(b); err == nil {
						_, _ = nc.Write(b)
					}
				}()
			}
		}()
		addrs = append(addrs, ln.Addr().String())
	}
	d := NewDialer(Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for round := range 3 {
		for _, addr := range addrs {
			nc, err := d.Dial(ctx, addr)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := nc.Write([]byte{1}); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(nc, make([]byte, 1)); err != nil {
				t.Fatalf("round %d, %s: %v", round, addr, err)
			}
			if got := nc.(*Conn).Used0RTT(); got != (round > 0) {
				t.Errorf("round %d, %s: 0-RTT %v", round, addr, got)
			}
			_ = nc.Close()
		}
	}
}

// TestCloseKeepsConnections: closing the listener stops accepting but
// leaves an accepted connection working (the edge sheds its sessions
// gradually while it drains); its socket closes after the last one.
func TestCloseKeepsConnections(t *testing.T) {
	ln, err := Listen("127.0.0.1:0", nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 1)
	go func() {
		if nc, err := ln.Accept(); err == nil {
			accepted <- nc
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d := NewDialer(Options{})
	nc, err := d.Dial(ctx, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := nc.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	sc := <-accepted
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := io.ReadFull(sc, b); err != nil {
		t.Fatalf("read after the listener closed: %v", err)
	}
	if _, err := sc.Write([]byte{2}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(nc, b); err != nil || b[0] != 2 {
		t.Fatalf("answer after the listener closed: %v %v", b, err)
	}
	// A new client (no session to resume, so the handshake must finish)
	// is not served.
	short, cancelShort := context.WithTimeout(ctx, time.Second)
	defer cancelShort()
	if c, err := NewDialer(Options{}).Dial(short, ln.Addr().String()); err == nil {
		_ = c.Close()
		t.Fatal("a new connection was accepted after Close")
	}
	_ = sc.(*Conn).Abort()
	waittest.Until(t, 5*time.Second, "the socket closes after the last connection", func() bool {
		_, err := ln.udp.WriteToUDP([]byte{0}, ln.udp.LocalAddr().(*net.UDPAddr))
		return errors.Is(err, net.ErrClosed)
	})
}
