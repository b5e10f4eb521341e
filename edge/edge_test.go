package edge

import (
	"bytes"
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
	"github.com/longlink/longlink/relay/wire"
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

func TestEngineIORequest(t *testing.T) {
	tests := []struct {
		line, sid string
		handshake bool
	}{
		{"GET /socket.io/?EIO=4&transport=polling&sid=abc123 HTTP/1.1\r\n", "abc123", false},
		{"POST /socket.io/?EIO=4&transport=polling&t=x&sid=Zz-_9 HTTP/1.1\r\n", "Zz-_9", false},
		{"GET /socket.io/?EIO=4&transport=websocket&sid=Zz HTTP/1.1\r\n", "Zz", false},
		{"GET /socket.io/?EIO=4&transport=polling&t=PaB3 HTTP/1.1\r\n", "", true},
		{"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n", "", false}, // WebSocket-only: no answer to read
		{"GET /socket.io/socket.io.min.js HTTP/1.1\r\n", "", false},
		{"garbage", "", false},
		{"GET /?sid=" + strings.Repeat("x", 200) + " HTTP/1.1\r\n", "", false},
	}
	for _, tc := range tests {
		if sid, hs := engineIORequest([]byte(tc.line)); sid != tc.sid || hs != tc.handshake {
			t.Errorf("engineIORequest(%q) = %q, %v; want %q, %v", tc.line, sid, hs, tc.sid, tc.handshake)
		}
	}
}

func TestHandshakeSid(t *testing.T) {
	const head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Length: 118\r\n\r\n"
	const open = `0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}`
	tests := []struct {
		name, answer, sid string
		ok                bool
	}{
		{"whole", head + open, "lv_VI97HAXpY6yYWAAAC", true},
		{"headers only so far", head, "", false},
		{"headers cut", head[:30], "", false},
		{"sid cut", head + open[:14], "", false},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n76\r\n" + open, "lv_VI97HAXpY6yYWAAAC", true},
		{"error answer", "HTTP/1.1 400 Bad Request\r\n\r\n{\"code\":5}", "", true},
		{"not an open packet", head + strings.Repeat("x", 100), "", true},
		{"odd characters", head + `0{"sid":"a b<c>"}`, "", true},
		{"empty sid", head + `0{"sid":""}`, "", true},
	}
	for _, tc := range tests {
		if sid, ok := handshakeSid([]byte(tc.answer)); sid != tc.sid || ok != tc.ok {
			t.Errorf("%s: handshakeSid = %q, %v; want %q, %v", tc.name, sid, ok, tc.sid, tc.ok)
		}
	}
	// The sniffer passes every byte through, whatever the read sizes.
	for _, step := range []int{1, 7, 64, 4096} {
		var got []string
		in := head + open + "trailing"
		s := &sidSniffer{r: &stepReader{b: []byte(in), step: step}, found: func(sid string) { got = append(got, sid) }}
		out, err := io.ReadAll(s)
		if err != nil || string(out) != in {
			t.Fatalf("step %d: sniffer changed the stream: %q %v", step, out, err)
		}
		if len(got) != 1 || got[0] != "lv_VI97HAXpY6yYWAAAC" {
			t.Fatalf("step %d: found %q", step, got)
		}
	}
}

// stepReader returns at most step bytes per Read.
type stepReader struct {
	b    []byte
	step int
}

func (r *stepReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), r.step)], r.b)
	r.b = r.b[n:]
	return n, nil
}

func FuzzEngineIORequest(f *testing.F) {
	f.Add([]byte("GET /socket.io/?EIO=4&transport=polling&sid=abc123 HTTP/1.1\r\n"))
	f.Add([]byte("GET /socket.io/?EIO=4&transport=polling&t=PaB3 HTTP/1.1\r\n"))
	f.Add([]byte("GET /%zz?sid=%00 HTTP/1.1\r\n"))
	f.Fuzz(func(t *testing.T, line []byte) {
		sid, hs := engineIORequest(line)
		if len(sid) > wire.MaxAffinityLen || (hs && sid != "") {
			t.Fatalf("engineIORequest(%q) = %q, %v", line, sid, hs)
		}
	})
}

func FuzzHandshakeSid(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\n0{\"sid\":\"abc\",\"upgrades\":[]}"))
	f.Add([]byte("HTTP/1.1 200 OK\r\n\r\n0{\"sid\":\""))
	f.Add([]byte("HTTP/1.1 400 Bad\r\n\r\n"))
	f.Fuzz(func(t *testing.T, answer []byte) {
		sid, ok := handshakeSid(answer)
		if sid != "" && (!ok || len(sid) > wire.MaxAffinityLen || !sidChars(sid)) {
			t.Fatalf("handshakeSid(%q) = %q, %v", answer, sid, ok)
		}
		// The sniffer never alters the stream and never holds more than
		// its limit.
		s := &sidSniffer{r: bytes.NewReader(answer), found: func(string) {}}
		out, err := io.ReadAll(s)
		if err != nil || !bytes.Equal(out, answer) || len(s.seen) > sniffLimit+len(answer) {
			t.Fatalf("sniffer: %q %v", out, err)
		}
	})
}

func TestConfigValidate(t *testing.T) {
	tests := []struct{ name, yaml, want string }{
		{"minimal", "cluster: demo\nrouting:\n  routes: [{cluster: demo, direct: {transport: quic, address: 127.0.0.1:7745}}]\n", ""},
		{"typo", "clustr: demo\n", "field clustr not found"},
		{"no route", "cluster: demo\n", "at least one route"},
		{"bad listen", "link: {listen: nowhere}\nrouting: {routes: [{cluster: default, direct: {transport: quic, address: x:1}}]}\n", "not ip:port"},
		{"turn without secret", "turn: {enabled: true}\nrouting: {routes: [{cluster: default, direct: {transport: quic, address: x:1}}]}\n", "turn:"},
		{"tls on link", "link: {tls: {certificates: [{cert_file: a, key_file: b}]}}\nrouting: {routes: [{cluster: default, direct: {transport: quic, address: x:1}}]}\n", "link.tls: only the WebLink"},
		{"tls without certificates", "weblink: {tls: {}}\nrouting: {routes: [{cluster: default, direct: {transport: quic, address: x:1}}]}\n", "weblink.tls.certificates: at least one"},
		{"tls files missing", "weblink: {tls: {certificates: [{cert_file: /nonexistent.pem, key_file: /nonexistent-key.pem}]}}\nrouting: {routes: [{cluster: default, direct: {transport: quic, address: x:1}}]}\n", "nonexistent.pem"},
		{"quic copies off", "link: {quic: 127.0.0.1:7724, quic_duplicate_max: -1}\nrouting: {routes: [{cluster: default, direct: {transport: quic, address: x:1}}]}\n", ""},
		{"quic copies too large", "link: {quic: 127.0.0.1:7724, quic_duplicate_max: 9000}\nrouting: {routes: [{cluster: default, direct: {transport: quic, address: x:1}}]}\n", "link.quic_duplicate_max"},
		{"tls version", "weblink: {tls: {min_version: \"1.1\", certificates: [{cert_file: a, key_file: b}]}}\nrouting: {routes: [{cluster: default, direct: {transport: quic, address: x:1}}]}\n", "min_version"},
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
