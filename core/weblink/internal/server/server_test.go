package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/longlink/longlink/pkg/waittest"
)

func newTestServer(t *testing.T, cfg Config) (*Server, *httptest.Server) {
	t.Helper()
	if cfg.AllowedOrigins == nil {
		cfg.AllowedOrigins = []string{"http://allowed.example"}
	}
	if cfg.Namespaces == nil {
		cfg.Namespaces = []string{"/admin"}
	}
	srv := New(cfg, &EchoHandler{Token: "secret"}, nil, nil)
	hs := httptest.NewServer(srv)
	t.Cleanup(func() {
		hs.CloseClientConnections()
		srv.Close()
		hs.Close()
	})
	return srv, hs
}

type resp struct {
	status int
	body   string
	header http.Header
}

func do(t *testing.T, method, url, body string, hdr map[string]string) resp {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return resp{r.StatusCode, string(b), r.Header}
}

func handshake(t *testing.T, base string) (string, map[string]any) {
	t.Helper()
	r := do(t, "GET", base+"/socket.io/?EIO=4&transport=polling", "", nil)
	if r.status != 200 || !strings.HasPrefix(r.body, "0{") {
		t.Fatalf("handshake: %d %q", r.status, r.body)
	}
	var open map[string]any
	if err := json.Unmarshal([]byte(r.body[1:]), &open); err != nil {
		t.Fatal(err)
	}
	return open["sid"].(string), open
}

// sessionOf is the open session sid, or nil.
func sessionOf(srv *Server, sid string) *session {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	return srv.sessions[sid]
}

// waitPollPending waits until the session sid holds a long-poll.
func waitPollPending(t *testing.T, srv *Server, sid string) {
	t.Helper()
	waittest.Until(t, 5*time.Second, "a pending poll", func() bool {
		ss := sessionOf(srv, sid)
		if ss == nil {
			return false
		}
		ss.mu.Lock()
		defer ss.mu.Unlock()
		return ss.poll != nil
	})
}

// waitParked waits until n connections are parked.
func waitParked(t *testing.T, srv *Server, n float64) {
	t.Helper()
	waittest.Until(t, 5*time.Second, fmt.Sprintf("%v parked connections", n), func() bool {
		return testutil.ToFloat64(srv.m.parked) == n
	})
}

func TestHandshakePolling(t *testing.T) {
	_, hs := newTestServer(t, Config{PingInterval: 300 * time.Millisecond, PingTimeout: 200 * time.Millisecond})
	r := do(t, "GET", hs.URL+"/socket.io/?EIO=4&transport=polling", "", nil)
	if r.status != 200 {
		t.Fatalf("status %d", r.status)
	}
	if ct := r.header.Get("Content-Type"); ct != "text/plain; charset=UTF-8" {
		t.Errorf("content type %q", ct)
	}
	var open struct {
		SID          string   `json:"sid"`
		Upgrades     []string `json:"upgrades"`
		PingInterval int      `json:"pingInterval"`
		PingTimeout  int      `json:"pingTimeout"`
		MaxPayload   int      `json:"maxPayload"`
	}
	if err := json.Unmarshal([]byte(r.body[1:]), &open); err != nil {
		t.Fatal(err)
	}
	if len(open.SID) != 20 || len(open.Upgrades) != 1 || open.Upgrades[0] != "websocket" ||
		open.PingInterval != 300 || open.PingTimeout != 200 || open.MaxPayload != 1000000 {
		t.Fatalf("open packet %+v", open)
	}
	if r.body[0] != '0' || !strings.HasPrefix(r.body, `0{"sid":`) {
		t.Fatalf("body %q", r.body)
	}
}

func TestBadRequests(t *testing.T) {
	_, hs := newTestServer(t, Config{})
	sid, _ := handshake(t, hs.URL)
	base := hs.URL + "/socket.io/"
	tests := []struct {
		name, method, query string
		hdr                 map[string]string
		status              int
		body                string
	}{
		{"no transport", "GET", "?EIO=4", nil, 400, `{"code":0,"message":"Transport unknown"}`},
		{"unknown transport", "GET", "?EIO=4&transport=tobi", nil, 400, `{"code":0,"message":"Transport unknown"}`},
		{"constructor transport", "GET", "?EIO=4&transport=constructor", nil, 400, `{"code":0,"message":"Transport unknown"}`},
		{"unknown sid", "GET", "?EIO=4&transport=polling&sid=test", nil, 400, `{"code":1,"message":"Session ID unknown"}`},
		{"post handshake", "POST", "?EIO=4&transport=polling", nil, 400, `{"code":2,"message":"Bad handshake method"}`},
		{"put handshake", "PUT", "?EIO=4&transport=polling", nil, 400, `{"code":2,"message":"Bad handshake method"}`},
		{"websocket without upgrade", "GET", "?EIO=4&transport=websocket", nil, 400, `{"code":3,"message":"Bad request"}`},
		{"transport mismatch", "GET", "?EIO=4&transport=websocket&sid=" + sid, nil, 400, `{"code":3,"message":"Bad request"}`},
		{"forbidden origin", "GET", "?EIO=4&transport=polling", map[string]string{"Origin": "http://evil.example"}, 403, `{"code":4,"message":"Forbidden"}`},
		{"no EIO", "GET", "?transport=polling", nil, 400, `{"code":5,"message":"Unsupported protocol version"}`},
		{"EIO 3", "GET", "?EIO=3&transport=polling", nil, 400, `{"code":5,"message":"Unsupported protocol version"}`},
		{"EIO abc", "GET", "?EIO=abc&transport=polling", nil, 400, `{"code":5,"message":"Unsupported protocol version"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, tt.method, base+tt.query, "", tt.hdr)
			if r.status != tt.status || r.body != tt.body {
				t.Fatalf("got %d %s, want %d %s", r.status, r.body, tt.status, tt.body)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("content type %q", ct)
			}
		})
	}
	t.Run("bad method with sid", func(t *testing.T) {
		if r := do(t, "PUT", base+"?EIO=4&transport=polling&sid="+sid, "", nil); r.status != 500 {
			t.Fatalf("status %d", r.status)
		}
	})
}

func TestCORS(t *testing.T) {
	_, hs := newTestServer(t, Config{})
	r := do(t, "GET", hs.URL+"/socket.io/?EIO=4&transport=polling", "", map[string]string{"Origin": "http://allowed.example"})
	if r.status != 200 || r.header.Get("Access-Control-Allow-Origin") != "http://allowed.example" || r.header.Get("Access-Control-Allow-Credentials") != "true" {
		t.Fatalf("allowed origin: %d %v", r.status, r.header)
	}
	r = do(t, "OPTIONS", hs.URL+"/socket.io/?EIO=4&transport=polling", "", map[string]string{
		"Origin": "http://allowed.example", "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"})
	if r.status != 204 || r.header.Get("Access-Control-Allow-Headers") != "content-type" {
		t.Fatalf("preflight: %d %v", r.status, r.header)
	}
	// A WebSocket upgrade from a foreign origin is refused like the reference's abortUpgrade.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, res, err := websocket.Dial(ctx, strings.Replace(hs.URL, "http", "ws", 1)+"/socket.io/?EIO=4&transport=websocket",
		&websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"http://evil.example"}}})
	if err == nil || res == nil || res.StatusCode != 400 {
		t.Fatalf("foreign origin upgrade: err=%v res=%v", err, res)
	}
	b, _ := io.ReadAll(res.Body)
	if string(b) != "Forbidden" {
		t.Fatalf("upgrade refusal body %q", b)
	}
}

func TestPollingSession(t *testing.T) {
	_, hs := newTestServer(t, Config{})
	sid, _ := handshake(t, hs.URL)
	u := hs.URL + "/socket.io/?EIO=4&transport=polling&sid=" + sid
	if r := do(t, "POST", u, `40{"token":"secret"}`, nil); r.status != 200 || r.body != "ok" || r.header.Get("Content-Type") != "text/html" {
		t.Fatalf("post: %d %q %v", r.status, r.body, r.header)
	}
	r := do(t, "GET", u, "", nil)
	if !strings.HasPrefix(r.body, `40{"sid":"`) {
		t.Fatalf("connect answer %q", r.body)
	}
	// Batched events in one POST, answered in one batched poll.
	if r := do(t, "POST", u, "421[\"echo\",1]\x1e42[\"echo\",\"two\"]\x1e42[\"echo\",\"x\"]", nil); r.status != 200 {
		t.Fatalf("post batch: %d", r.status)
	}
	r = do(t, "GET", u, "", nil)
	if want := "431[1]\x1e42[\"echo\",\"two\"]\x1e42[\"echo\",\"x\"]"; r.body != want {
		t.Fatalf("batched poll %q, want %q", r.body, want)
	}
	// Binary attachment through polling: base64 behind 'b'.
	if r := do(t, "POST", u, "451-2[\"echo\",{\"_placeholder\":true,\"num\":0}]\x1ebAQIDBA==", nil); r.status != 200 {
		t.Fatalf("post binary: %d", r.status)
	}
	r = do(t, "GET", u, "", nil)
	if want := "461-2[{\"_placeholder\":true,\"num\":0}]\x1ebAQIDBA=="; r.body != want {
		t.Fatalf("binary ack %q, want %q", r.body, want)
	}
	// Unknown namespace.
	do(t, "POST", u, "40/nope,", nil)
	r = do(t, "GET", u, "", nil)
	if want := `44/nope,{"message":"Invalid namespace"}`; r.body != want {
		t.Fatalf("invalid namespace %q", r.body)
	}
	// Bad token on another namespace.
	do(t, "POST", u, `40/admin,{"token":"bad"}`, nil)
	r = do(t, "GET", u, "", nil)
	if want := `44/admin,{"message":"unauthorized","data":{"code":401}}`; r.body != want {
		t.Fatalf("connect error %q", r.body)
	}
}

func TestPollingTooLarge(t *testing.T) {
	_, hs := newTestServer(t, Config{MaxPayload: 100})
	sid, _ := handshake(t, hs.URL)
	u := hs.URL + "/socket.io/?EIO=4&transport=polling&sid=" + sid
	if r := do(t, "POST", u, "4"+strings.Repeat("x", 200), nil); r.status != 413 {
		t.Fatalf("status %d", r.status)
	}
}

func TestPollingInvalidPacketClosesSession(t *testing.T) {
	_, hs := newTestServer(t, Config{})
	sid, _ := handshake(t, hs.URL)
	u := hs.URL + "/socket.io/?EIO=4&transport=polling&sid=" + sid
	if r := do(t, "POST", u, "abc", nil); r.status != 400 {
		t.Fatalf("invalid packet: %d", r.status)
	}
	if r := do(t, "GET", u, "", nil); r.status != 400 {
		t.Fatalf("poll after close: %d", r.status)
	}
}

func TestPollingDuplicatePoll(t *testing.T) {
	srv, hs := newTestServer(t, Config{})
	sid, _ := handshake(t, hs.URL)
	u := hs.URL + "/socket.io/?EIO=4&transport=polling&sid=" + sid
	first := make(chan resp, 1)
	go func() { first <- do(t, "GET", u, "", nil) }()
	waitPollPending(t, srv, sid)
	if r := do(t, "GET", u+"&t=burst", "", nil); r.status != 400 {
		t.Fatalf("second poll: %d", r.status)
	}
	if r := <-first; r.status != 200 || r.body != "1" {
		t.Fatalf("first poll: %d %q", r.status, r.body)
	}
	if r := do(t, "GET", u, "", nil); r.status != 400 {
		t.Fatalf("poll after close: %d", r.status)
	}
}

func TestPollingClientClose(t *testing.T) {
	srv, hs := newTestServer(t, Config{})
	sid, _ := handshake(t, hs.URL)
	u := hs.URL + "/socket.io/?EIO=4&transport=polling&sid=" + sid
	first := make(chan resp, 1)
	go func() { first <- do(t, "GET", u, "", nil) }()
	waitPollPending(t, srv, sid)
	do(t, "POST", u, "1", nil)
	if r := <-first; r.status != 200 || r.body != "6" {
		t.Fatalf("pending poll: %d %q", r.status, r.body)
	}
	if r := do(t, "GET", u, "", nil); r.status != 400 {
		t.Fatalf("poll after close: %d", r.status)
	}
}

// TestPollingHeartbeat: the server pings every interval over polling, a pong
// keeps the session, and a session that does not answer is closed. The ping
// timeout leaves a loaded machine time to answer; the close is awaited, not
// timed.
func TestPollingHeartbeat(t *testing.T) {
	srv, hs := newTestServer(t, Config{PingInterval: 300 * time.Millisecond, PingTimeout: time.Second})
	sid, _ := handshake(t, hs.URL)
	u := hs.URL + "/socket.io/?EIO=4&transport=polling&sid=" + sid
	for i := 0; i < 3; i++ {
		if r := do(t, "GET", u, "", nil); r.body != "2" {
			t.Fatalf("poll %d: %q", i, r.body)
		}
		if r := do(t, "POST", u, "3", nil); r.status != 200 {
			t.Fatalf("pong %d: %d", i, r.status)
		}
	}
	sid2, _ := handshake(t, hs.URL)
	waittest.Until(t, 10*time.Second, "the unanswered session closed", func() bool { return sessionOf(srv, sid2) == nil })
	if n := testutil.ToFloat64(srv.m.pingTimeouts); n < 1 {
		t.Fatal("the close was not a ping timeout")
	}
	if r := do(t, "GET", hs.URL+"/socket.io/?EIO=4&transport=polling&sid="+sid2, "", nil); r.status != 400 {
		t.Fatalf("after ping timeout: %d %q", r.status, r.body)
	}
}

func wsDial(t *testing.T, url string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, strings.Replace(url, "http", "ws", 1), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

func wsRead(t *testing.T, c *websocket.Conn) (websocket.MessageType, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	typ, b, err := c.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return typ, string(b)
}

func wsWrite(t *testing.T, c *websocket.Conn, typ websocket.MessageType, s string) {
	t.Helper()
	if err := c.Write(context.Background(), typ, []byte(s)); err != nil {
		t.Fatal(err)
	}
}

func TestWebSocketSession(t *testing.T) {
	_, hs := newTestServer(t, Config{})
	c := wsDial(t, hs.URL+"/socket.io/?EIO=4&transport=websocket")
	_, open := wsRead(t, c)
	if !strings.HasPrefix(open, `0{"sid":"`) || !strings.Contains(open, `"upgrades":[]`) {
		t.Fatalf("open %q", open)
	}
	wsWrite(t, c, websocket.MessageText, `40{"token":"secret"}`)
	if _, m := wsRead(t, c); !strings.HasPrefix(m, `40{"sid":"`) {
		t.Fatalf("connect %q", m)
	}
	wsWrite(t, c, websocket.MessageText, `427["echo","hi",{"a":1}]`)
	if _, m := wsRead(t, c); m != `437["hi",{"a":1}]` {
		t.Fatalf("ack %q", m)
	}
	// Binary event: placeholder text then a binary frame; the ack comes back the same way.
	wsWrite(t, c, websocket.MessageText, `451-8["echo",{"_placeholder":true,"num":0}]`)
	wsWrite(t, c, websocket.MessageBinary, "\x01\x02\x03")
	if _, m := wsRead(t, c); m != `461-8[{"_placeholder":true,"num":0}]` {
		t.Fatalf("binary ack %q", m)
	}
	if typ, m := wsRead(t, c); typ != websocket.MessageBinary || m != "\x01\x02\x03" {
		t.Fatalf("attachment %v %q", typ, m)
	}
	// A plain (non-socket.io) packet closes the connection.
	wsWrite(t, c, websocket.MessageText, "4abc")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, _, err := c.Read(ctx); err == nil {
		t.Fatal("connection stayed open after an invalid packet")
	}
}

func TestWebSocketPingTimeout(t *testing.T) {
	_, hs := newTestServer(t, Config{PingInterval: 200 * time.Millisecond, PingTimeout: time.Second})
	c := wsDial(t, hs.URL+"/socket.io/?EIO=4&transport=websocket")
	wsRead(t, c) // open
	for i := 0; i < 2; i++ {
		if _, m := wsRead(t, c); m != "2" {
			t.Fatalf("ping %q", m)
		}
		wsWrite(t, c, websocket.MessageText, "3")
	}
	wsRead(t, c) // ping, left unanswered
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _, err := c.Read(ctx)
	if websocket.CloseStatus(err) != websocket.StatusNormalClosure {
		t.Fatalf("after ping timeout: %v", err)
	}
}

func TestUpgrade(t *testing.T) {
	srv, hs := newTestServer(t, Config{})
	sid, _ := handshake(t, hs.URL)
	u := hs.URL + "/socket.io/?EIO=4&transport=polling&sid=" + sid
	do(t, "POST", u, `40{"token":"secret"}`, nil)
	if r := do(t, "GET", u, "", nil); !strings.HasPrefix(r.body, "40") {
		t.Fatalf("connect %q", r.body)
	}
	pending := make(chan resp, 1)
	go func() { pending <- do(t, "GET", u, "", nil) }()
	waitPollPending(t, srv, sid)
	c := wsDial(t, hs.URL+"/socket.io/?EIO=4&transport=websocket&sid="+sid)
	wsWrite(t, c, websocket.MessageText, "2probe")
	if _, m := wsRead(t, c); m != "3probe" {
		t.Fatalf("probe answer %q", m)
	}
	if r := <-pending; r.status != 200 || r.body != "6" {
		t.Fatalf("pending poll during upgrade: %d %q", r.status, r.body)
	}
	wsWrite(t, c, websocket.MessageText, "5")
	wsWrite(t, c, websocket.MessageText, `42["echo","after"]`)
	if _, m := wsRead(t, c); m != `42["echo","after"]` {
		t.Fatalf("after upgrade %q", m)
	}
	if r := do(t, "GET", u, "", nil); r.status != 400 {
		t.Fatalf("poll after upgrade: %d", r.status)
	}
	// A second WebSocket for the same sid is accepted and closed.
	c2 := wsDial(t, hs.URL+"/socket.io/?EIO=4&transport=websocket&sid="+sid)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, _, err := c2.Read(ctx); err == nil {
		t.Fatal("second websocket stayed open")
	}
	wsWrite(t, c, websocket.MessageText, `42["echo","still"]`)
	if _, m := wsRead(t, c); m != `42["echo","still"]` {
		t.Fatalf("after second probe %q", m)
	}
}

func TestWebSocketTooLarge(t *testing.T) {
	_, hs := newTestServer(t, Config{MaxPayload: 1000})
	c := wsDial(t, hs.URL+"/socket.io/?EIO=4&transport=websocket")
	wsRead(t, c)
	wsWrite(t, c, websocket.MessageText, "4"+strings.Repeat("x", 2000))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _, err := c.Read(ctx)
	if websocket.CloseStatus(err) != websocket.StatusMessageTooBig {
		t.Fatalf("got %v, want close 1009", err)
	}
}

// TestParkedConnections checks that connections parked without a reader
// wake up for data, answer pings, and end properly when the server closes them.
func TestParkedConnections(t *testing.T) {
	srv, hs := newTestServer(t, Config{ParkAfter: 20 * time.Millisecond, PingInterval: 300 * time.Millisecond, PingTimeout: time.Second})
	if srv.parker == nil {
		t.Skip("no parking on this platform")
	}
	c := wsDial(t, hs.URL+"/socket.io/?EIO=4&transport=websocket")
	wsRead(t, c)
	wsWrite(t, c, websocket.MessageText, `40{"token":"secret"}`)
	wsRead(t, c)
	for i := 0; i < 3; i++ {
		waitParked(t, srv, 1)
		wsWrite(t, c, websocket.MessageText, fmt.Sprintf(`42%d["echo",%d]`, i, i))
		for {
			_, m := wsRead(t, c)
			if m == "2" {
				wsWrite(t, c, websocket.MessageText, "3")
				continue
			}
			if want := fmt.Sprintf(`43%d[%d]`, i, i); m != want {
				t.Fatalf("got %q, want %q", m, want)
			}
			break
		}
	}
	// A parked connection whose client stops answering pings is closed by
	// the server, and its end is accounted for.
	waitParked(t, srv, 1)
	waittest.Until(t, 5*time.Second, "the parked connection's session closed after the ping timeout", func() bool { return srv.Sessions() == 0 })
	waitParked(t, srv, 0)
	done := make(chan struct{})
	go func() { srv.conns.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("connection goroutine accounting did not end")
	}
}

func TestSessionLimits(t *testing.T) {
	_, hs := newTestServer(t, Config{MaxPerIP: 2})
	handshake(t, hs.URL)
	handshake(t, hs.URL)
	if r := do(t, "GET", hs.URL+"/socket.io/?EIO=4&transport=polling", "", nil); r.status != 503 {
		t.Fatalf("third session from one address: %d", r.status)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, res, err := websocket.Dial(ctx, strings.Replace(hs.URL, "http", "ws", 1)+"/socket.io/?EIO=4&transport=websocket", nil)
	if err == nil || res == nil || res.StatusCode != 503 {
		t.Fatalf("websocket over the limit: %v %v", err, res)
	}
}

func TestMetricNames(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	m.handshakes.WithLabelValues("polling").Inc()
	m.closes.WithLabelValues("x").Inc()
	m.requestErrors.WithLabelValues("0").Inc()
	m.refused.WithLabelValues("per_ip").Inc()
	m.parseErrors.WithLabelValues("eio").Inc()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(fams) != 17 {
		t.Errorf("%d metric families, want 17", len(fams))
	}
	for _, f := range fams {
		n := f.GetName()
		if !strings.HasPrefix(n, "longlink_weblink_") {
			t.Errorf("%s: not longlink_weblink_*", n)
		}
		if f.GetType() == dto.MetricType_COUNTER && !strings.HasSuffix(n, "_total") {
			t.Errorf("counter %s does not end in _total", n)
		}
		if f.GetHelp() == "" {
			t.Errorf("%s has no help", n)
		}
	}
}

func TestDrain(t *testing.T) {
	srv, hs := newTestServer(t, Config{})
	var conns []*websocket.Conn
	for i := 0; i < 4; i++ {
		c := wsDial(t, hs.URL+"/socket.io/?EIO=4&transport=websocket")
		wsRead(t, c)
		wsWrite(t, c, websocket.MessageText, `40{"token":"secret"}`)
		wsRead(t, c)
		conns = append(conns, c)
	}
	sid, _ := handshake(t, hs.URL)
	pending := make(chan resp, 1)
	go func() { pending <- do(t, "GET", hs.URL+"/socket.io/?EIO=4&transport=polling&sid="+sid, "", nil) }()
	waitPollPending(t, srv, sid)
	start := time.Now()
	srv.Drain(context.Background(), 200*time.Millisecond)
	if time.Since(start) < 100*time.Millisecond {
		t.Errorf("drain of 5 sessions took %s, want it spread over ~200ms", time.Since(start))
	}
	for i, c := range conns {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, _, err := c.Read(ctx)
		cancel()
		if websocket.CloseStatus(err) != websocket.StatusNormalClosure {
			t.Errorf("conn %d: %v, want a normal close", i, err)
		}
	}
	if r := <-pending; r.status != 200 || r.body != "1" {
		t.Errorf("pending poll at drain: %d %q", r.status, r.body)
	}
	if r := do(t, "GET", hs.URL+"/socket.io/?EIO=4&transport=polling", "", nil); r.status != 503 {
		t.Errorf("handshake while draining: %d", r.status)
	}
	if n := srv.Sessions(); n != 0 {
		t.Errorf("%d sessions left", n)
	}
}

// refusingHandler refuses every namespace connection with an error whose
// data does not encode.
type refusingHandler struct{ EchoHandler }

func (*refusingHandler) Connect(*Socket, json.RawMessage) error {
	return &ConnectError{Message: "no\x01 <entry>", Data: func() {}}
}

// A CONNECT_ERROR whose data does not encode still carries its message as
// JSON (it was Go-quoted: "no\x01 <entry>" is not JSON).
func TestConnectErrorMessageOnly(t *testing.T) {
	srv := New(Config{AllowedOrigins: []string{"http://allowed.example"}}, &refusingHandler{}, nil, nil)
	hs := httptest.NewServer(srv)
	t.Cleanup(func() {
		hs.CloseClientConnections()
		srv.Close()
		hs.Close()
	})
	sid, _ := handshake(t, hs.URL)
	u := hs.URL + "/socket.io/?EIO=4&transport=polling&sid=" + sid
	do(t, "POST", u, `40`, nil)
	r := do(t, "GET", u, "", nil)
	if want := `44{"message":"no\u0001 \u003centry\u003e"}`; r.body != want {
		t.Fatalf("connect error %q, want %q", r.body, want)
	}
}
