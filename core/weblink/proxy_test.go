package weblink

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/pires/go-proxyproto"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/longlink/longlink/core/gateway"
	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/pkg/waittest"
)

// ipRecorder is a Sessions fake that records the client address of each
// login and refuses it.
type ipRecorder struct {
	reg *prometheus.Registry // WebLink's metrics
	mu  sync.Mutex
	ips []string
}

// parkedConnections reads longlink_weblink_parked_connections.
func parkedConnections(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == "longlink_weblink_parked_connections" {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return 0
}

func (r *ipRecorder) Login(_ context.Context, _ gateway.Transport, clientIP string, _ []byte) (*gateway.Session, []byte, error) {
	r.mu.Lock()
	r.ips = append(r.ips, clientIP)
	r.mu.Unlock()
	return nil, nil, imapi.Errorf(imapi.ErrUnauthorized, "recorded")
}

func (r *ipRecorder) last() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.ips) == 0 {
		return ""
	}
	return r.ips[len(r.ips)-1]
}

func startRecorder(t *testing.T, trusted []string) (*WebLink, *ipRecorder) {
	t.Helper()
	rec := &ipRecorder{reg: prometheus.NewRegistry()}
	cfg := Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.TrustedProxies = trusted
	wl, err := New(cfg, Deps{Gateway: rec, Registerer: rec.reg})
	if err != nil {
		t.Fatal(err)
	}
	if err := wl.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = wl.Shutdown(ctx)
	})
	return wl, rec
}

// exchange sends one HTTP request on a new connection, optionally behind a
// PROXY v2 header claiming client src.
func exchange(t *testing.T, addr, src string, req *http.Request) (*http.Response, string, error) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if src != "" {
		h := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.ParseIP(src), Port: 40000}, c.RemoteAddr())
		if _, err := h.WriteTo(c); err != nil {
			t.Fatal(err)
		}
	}
	if err := req.Write(c); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), req)
	if err != nil {
		return nil, "", err
	}
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b), nil
}

// loginVia opens a polling session and sends CONNECT, each request behind a
// PROXY header from src (none when empty) and with the extra headers.
func loginVia(t *testing.T, addr, src string, hdr http.Header) error {
	t.Helper()
	get, _ := http.NewRequest("GET", "http://"+addr+"/socket.io/?EIO=4&transport=polling", nil)
	get.Header = hdr.Clone()
	resp, body, err := exchange(t, addr, src, get)
	if err != nil {
		return err
	}
	if resp.StatusCode != 200 {
		return &httpError{resp.StatusCode}
	}
	var open struct {
		SID string `json:"sid"`
	}
	if err := json.Unmarshal([]byte(body[1:]), &open); err != nil {
		t.Fatal(err)
	}
	u := "http://" + addr + "/socket.io/?EIO=4&transport=polling&sid=" + open.SID
	post, _ := http.NewRequest("POST", u, strings.NewReader(`40{"appkey":"a","account":"b","token":"c"}`))
	post.Header = hdr.Clone()
	if _, _, err := exchange(t, addr, src, post); err != nil {
		return err
	}
	poll, _ := http.NewRequest("GET", u, nil)
	poll.Header = hdr.Clone()
	_, body, err = exchange(t, addr, src, poll)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(body, "44{") {
		t.Fatalf("want CONNECT_ERROR, got %q", body)
	}
	return nil
}

type httpError struct{ status int }

func (e *httpError) Error() string { return http.StatusText(e.status) }

func TestProxyHeaderFromTrustedPeer(t *testing.T) {
	wl, rec := startRecorder(t, []string{"127.0.0.0/8"})
	if err := loginVia(t, wl.Addr().String(), "203.0.113.7", nil); err != nil {
		t.Fatal(err)
	}
	if got := rec.last(); got != "203.0.113.7" {
		t.Fatalf("client IP %q, want the PROXY header's 203.0.113.7", got)
	}
	// Without a header a trusted peer is itself the client.
	if err := loginVia(t, wl.Addr().String(), "", nil); err != nil {
		t.Fatal(err)
	}
	if got := rec.last(); got != "127.0.0.1" {
		t.Fatalf("client IP %q, want 127.0.0.1", got)
	}
	// X-Forwarded-For from a trusted proxy (nginx): its last entry.
	if err := loginVia(t, wl.Addr().String(), "", http.Header{"X-Forwarded-For": {"198.51.100.1, 192.0.2.9"}}); err != nil {
		t.Fatal(err)
	}
	if got := rec.last(); got != "192.0.2.9" {
		t.Fatalf("client IP %q, want 192.0.2.9 from X-Forwarded-For", got)
	}
}

func TestProxyHeaderFromUntrustedPeer(t *testing.T) {
	wl, rec := startRecorder(t, nil)
	// The header is not parsed: its bytes make the request unreadable.
	err := loginVia(t, wl.Addr().String(), "203.0.113.7", nil)
	if err == nil {
		t.Fatalf("a PROXY header from an untrusted peer was accepted (client IP %q)", rec.last())
	}
	// X-Forwarded-For from an untrusted peer is ignored.
	if err := loginVia(t, wl.Addr().String(), "", http.Header{"X-Forwarded-For": {"192.0.2.9"}}); err != nil {
		t.Fatal(err)
	}
	if got := rec.last(); got != "127.0.0.1" {
		t.Fatalf("client IP %q, want 127.0.0.1", got)
	}
}

// TestProxiedWebSocketParks checks a WebSocket behind a PROXY v2 header (the
// edge's path): the client address comes from the header, and the connection
// keeps working after it has been parked.
func TestProxiedWebSocketParks(t *testing.T) {
	wl, rec := startRecorder(t, []string{"127.0.0.0/8"})
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		h := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.ParseIP("203.0.113.9"), Port: 5555}, c.RemoteAddr())
		if _, err := h.WriteTo(c); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+wl.Addr().String()+"/socket.io/?EIO=4&transport=websocket",
		&websocket.DialOptions{HTTPClient: &http.Client{Transport: &http.Transport{DialContext: dial}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if _, open, err := c.Read(ctx); err != nil || !strings.HasPrefix(string(open), "0{") {
		t.Fatalf("open %q %v", open, err)
	}
	for i := 0; i < 2; i++ {
		waittest.Until(t, 5*time.Second, "the idle connection parked", func() bool { return parkedConnections(t, rec.reg) == 1 })
		if err := c.Write(ctx, websocket.MessageText, []byte(`40{"appkey":"a","account":"b","token":"c"}`)); err != nil {
			t.Fatal(err)
		}
		_, m, err := c.Read(ctx)
		if err != nil || !strings.HasPrefix(string(m), "44{") {
			t.Fatalf("round %d: %q %v, want CONNECT_ERROR", i, m, err)
		}
		if got := rec.last(); got != "203.0.113.9" {
			t.Fatalf("client IP %q, want 203.0.113.9", got)
		}
	}
}
