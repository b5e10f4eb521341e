package edge

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/longlink/longlink/pkg/config"
)

func TestEdgeMem(t *testing.T) {
	w := newWorld(t, "mem", memCreds(), nil)
	t.Run("link", func(t *testing.T) { linkRoundTrip(t, w).Close() })
	t.Run("http and websocket", func(t *testing.T) { checkHTTP(t, w) })
	t.Run("udp", func(t *testing.T) { checkUDP(t, w) })
}

func TestPerIPLimit(t *testing.T) {
	w := newWorld(t, "mem", memCreds(), func(c *Config) { c.Limits.MaxSessionsPerIP = 1 })
	// newWorld's own probe request must be gone from the table first.
	deadline := time.Now().Add(5 * time.Second)
	for len(w.edge.Sessions()) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("sessions left: %+v", w.edge.Sessions())
		}
		time.Sleep(10 * time.Millisecond)
	}
	c1 := linkRoundTrip(t, w)
	defer c1.Close()
	c2, err := net.Dial("tcp", w.edge.Addr("link").String())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	_ = c2.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := c2.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("second connection from one IP: read err %v, want EOF", err)
	}
}

type announcer struct{ draining atomic.Bool }

func (a *announcer) Drain(context.Context) error { a.draining.Store(true); return nil }

func TestDrain(t *testing.T) {
	w := newWorld(t, "mem", memCreds(), nil)
	a := &announcer{}
	w.edge.deps.Announcer = a
	var conns []net.Conn
	for i := 0; i < 5; i++ {
		conns = append(conns, linkRoundTrip(t, w))
	}
	addr := w.edge.Addr("link").String()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := w.edge.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if !a.draining.Load() {
		t.Fatal("LBS was not told about the drain")
	}
	for i, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatalf("session %d still open after drain", i)
		}
	}
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Fatalf("sessions shed in %s, not spread over the drain period", d)
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Fatal("edge still accepting after drain")
	}
	if n := len(w.edge.Sessions()); n != 0 {
		t.Fatalf("%d sessions left", n)
	}
}

func TestUDPIdle(t *testing.T) {
	w := newWorld(t, "mem", memCreds(), func(c *Config) { c.UDP[0].IdleTimeout = config.Duration(time.Second) })
	checkUDP(t, w)
	deadline := time.Now().Add(4 * time.Second)
	for {
		n := 0
		for _, s := range w.edge.Sessions() {
			if s.Listener == "udp:media" {
				n++
			}
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("idle UDP mapping not removed")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestSocketIOSid(t *testing.T) {
	tests := []struct{ line, want string }{
		{"GET /socket.io/?EIO=4&transport=polling&sid=abc123 HTTP/1.1\r\n", "abc123"},
		{"POST /socket.io/?EIO=4&transport=polling&t=x&sid=Zz-_9 HTTP/1.1\r\n", "Zz-_9"},
		{"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\n", ""},
		{"garbage", ""},
		{"GET /?sid=" + strings.Repeat("x", 200) + " HTTP/1.1\r\n", ""},
	}
	for _, tc := range tests {
		if got := socketIOSid([]byte(tc.line)); got != tc.want {
			t.Errorf("socketIOSid(%q) = %q, want %q", tc.line, got, tc.want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct{ name, yaml, want string }{
		{"minimal", "cluster: demo\nrouting:\n  routes: [{cluster: demo, direct: {transport: quic, address: 127.0.0.1:7745}}]\n", ""},
		{"typo", "clustr: demo\n", "field clustr not found"},
		{"no route", "cluster: demo\n", "at least one route"},
		{"bad listen", "link: {listen: nowhere}\nrouting: {routes: [{cluster: default, direct: {transport: quic, address: x:1}}]}\n", "not ip:port"},
		{"turn without secret", "turn: {enabled: true}\nrouting: {routes: [{cluster: default, direct: {transport: quic, address: x:1}}]}\n", "turn:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Default()
			err := config.Decode("edge.yaml", []byte(tc.yaml), &cfg)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// The example configs in deployments/edge must load and validate.
func TestDeploymentConfigs(t *testing.T) {
	files, _ := filepath.Glob("../deployments/edge/*.yaml")
	if len(files) == 0 {
		t.Fatal("no example configs in deployments/edge")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			t.Setenv("LONGLINK_CLUSTER_KEY", "example-cluster-key-0123456789")
			t.Setenv("LONGLINK_TURN_SECRET", "example-turn-secret-0123456789")
			t.Setenv("LONGLINK_LINK_KEY", "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=")
			switch {
			case strings.HasPrefix(filepath.Base(f), "edge"):
				cfg := Default()
				err = config.Decode(f, b, &cfg)
			default:
				err = decodeRelayExample(f, b)
			}
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}
