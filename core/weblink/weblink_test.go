package weblink

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/pkg/config"
)

// sioClient is a minimal Socket.IO-over-WebSocket client for protocol-level
// tests; the Node.js tests use the official client.
type sioClient struct {
	t    *testing.T
	c    *websocket.Conn
	next int
}

func dialSIO(t *testing.T, base string, auth any) *sioClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, strings.Replace(base, "http", "ws", 1)+"/socket.io/?EIO=4&transport=websocket", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	s := &sioClient{t: t, c: c}
	if open := s.read(); !strings.HasPrefix(open, "0{") {
		t.Fatalf("open packet %q", open)
	}
	a, _ := json.Marshal(auth)
	s.write("40" + string(a))
	return s
}

func (s *sioClient) read() string {
	s.t.Helper()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, b, err := s.c.Read(ctx)
		cancel()
		if err != nil {
			s.t.Fatalf("read: %v", err)
		}
		if string(b) == "2" { // ping
			s.write("3")
			continue
		}
		return string(b)
	}
}

func (s *sioClient) write(m string) {
	s.t.Helper()
	if err := s.c.Write(context.Background(), websocket.MessageText, []byte(m)); err != nil {
		s.t.Fatalf("write: %v", err)
	}
}

// event reads until an event named name arrives and returns its argument.
func (s *sioClient) event(name string) json.RawMessage {
	s.t.Helper()
	for {
		m := s.read()
		if !strings.HasPrefix(m, "42[") {
			continue
		}
		var arr []json.RawMessage
		if err := json.Unmarshal([]byte(m[2:]), &arr); err != nil {
			s.t.Fatalf("event %q: %v", m, err)
		}
		var n string
		_ = json.Unmarshal(arr[0], &n)
		if n == name && len(arr) > 1 {
			return arr[1]
		}
	}
}

// request emits op with body and waits for the ack.
func (s *sioClient) request(op string, body any) ackBody {
	s.t.Helper()
	s.next++
	id := s.next
	b, _ := json.Marshal([]any{op, body})
	s.write(fmt.Sprintf("42%d%s", id, b))
	prefix := fmt.Sprintf("43%d[", id)
	for {
		m := s.read()
		if !strings.HasPrefix(m, prefix) {
			continue
		}
		var arr []ackBody
		if err := json.Unmarshal([]byte(m[len(prefix)-1:]), &arr); err != nil || len(arr) != 1 {
			s.t.Fatalf("ack %q: %v", m, err)
		}
		return arr[0]
	}
}

func loginReq(c *testCore, account, device string) imapi.LoginReq {
	return imapi.LoginReq{AppKey: testAppKey, Account: account, Token: c.tokens[account], DeviceID: device, DeviceType: "web", SDKVersion: "test"}
}

func TestIMOverSocketIO(t *testing.T) {
	c := startCore(t, nil)

	alice := dialSIO(t, c.url, loginReq(c, "alice", "a1"))
	if m := alice.read(); !strings.HasPrefix(m, `40{"sid":"`) {
		t.Fatalf("alice connect %q", m)
	}
	var lr imapi.LoginResp
	if err := json.Unmarshal(alice.event("login"), &lr); err != nil || lr.SessionID == "" || lr.HeartbeatSec == 0 {
		t.Fatalf("login answer %+v %v", lr, err)
	}
	bob := dialSIO(t, c.url, loginReq(c, "bob", "b1"))
	bob.event("login")

	a := alice.request("send", imapi.SendReq{ConvType: imapi.ConvP2P, To: "bob", ClientMsgID: "m1", Type: "text", Body: json.RawMessage(`{"text":"hi bob"}`)})
	if a.Code != imapi.OK {
		t.Fatalf("send: %+v", a)
	}
	var sa imapi.SendAck
	if err := json.Unmarshal(a.Body, &sa); err != nil || sa.Seq != 1 || sa.MsgID == "" {
		t.Fatalf("send ack %s %v", a.Body, err)
	}
	var msg imapi.Message
	if err := json.Unmarshal(bob.event("message"), &msg); err != nil || msg.From != "alice" || msg.Seq != 1 || string(msg.Body) != `{"text":"hi bob"}` {
		t.Fatalf("push %+v %v", msg, err)
	}
	// Idempotent resend: the same client message id gets the same ack.
	if again := alice.request("send", imapi.SendReq{ConvType: imapi.ConvP2P, To: "bob", ClientMsgID: "m1", Type: "text", Body: json.RawMessage(`{"text":"hi bob"}`)}); string(again.Body) != string(a.Body) {
		t.Fatalf("resend ack %s, want %s", again.Body, a.Body)
	}
	// Sync from bob's side.
	s := bob.request("sync", imapi.SyncReq{ConvID: sa.ConvID})
	var sr imapi.SyncResp
	if err := json.Unmarshal(s.Body, &sr); s.Code != 0 || err != nil || len(sr.Messages) != 1 || sr.Messages[0].MsgID != sa.MsgID {
		t.Fatalf("sync %+v %s", s, s.Body)
	}
	// Errors carry the imapi codes.
	if r := alice.request("no.such.op", map[string]any{}); r.Code != imapi.ErrUnknownOp {
		t.Fatalf("unknown op: %+v", r)
	}
	if r := alice.request("send", map[string]any{"conv_type": 1, "to": "bob"}); r.Code != imapi.ErrBadRequest || r.Message == "" {
		t.Fatalf("bad send: %+v", r)
	}
	if r := alice.request("login", loginReq(c, "alice", "a1")); r.Code != imapi.ErrBadRequest {
		t.Fatalf("second login: %+v", r)
	}
	if r := alice.request("heartbeat", nil); r.Code != imapi.OK {
		t.Fatalf("heartbeat: %+v", r)
	}
	// A second web device of alice kicks the first (kick_same_type).
	alice2 := dialSIO(t, c.url, loginReq(c, "alice", "a2"))
	alice2.event("login")
	var k imapi.Kick
	if err := json.Unmarshal(alice.event("kick"), &k); err != nil || k.Code != imapi.ErrKicked {
		t.Fatalf("kick %+v %v", k, err)
	}
	// Logout ends the connection after the answer.
	if r := bob.request("logout", nil); r.Code != imapi.OK {
		t.Fatalf("logout: %+v", r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		if _, _, err := bob.c.Read(ctx); err != nil {
			break
		}
	}
}

func TestLoginRefused(t *testing.T) {
	c := startCore(t, nil)
	tests := []struct {
		name string
		auth any
		code imapi.Code
	}{
		{"bad token", imapi.LoginReq{AppKey: testAppKey, Account: "alice", Token: "wrong", DeviceID: "x", DeviceType: "web"}, imapi.ErrUnauthorized},
		{"no auth", nil, imapi.ErrUnauthorized},
		{"unknown app", imapi.LoginReq{AppKey: "nope", Account: "alice", Token: "t", DeviceID: "x", DeviceType: "web"}, imapi.ErrUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s *sioClient
			if tt.auth == nil {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				conn, _, err := websocket.Dial(ctx, strings.Replace(c.url, "http", "ws", 1)+"/socket.io/?EIO=4&transport=websocket", nil)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.CloseNow()
				s = &sioClient{t: t, c: conn}
				s.read()
				s.write("40")
			} else {
				s = dialSIO(t, c.url, tt.auth)
			}
			m := s.read()
			if !strings.HasPrefix(m, "44{") {
				t.Fatalf("got %q, want CONNECT_ERROR", m)
			}
			var ce struct {
				Message string      `json:"message"`
				Data    imapi.Error `json:"data"`
			}
			if err := json.Unmarshal([]byte(m[2:]), &ce); err != nil || ce.Data.Code != tt.code || ce.Message == "" {
				t.Fatalf("connect error %q: %+v %v", m, ce, err)
			}
		})
	}
}

func TestDemoPageAndBundle(t *testing.T) {
	c := startCore(t, nil)
	for _, tt := range []struct{ path, ctype, contains string }{
		{"/", "text/html; charset=utf-8", "/sdk/longlink.min.js"},
		{"/sdk/longlink.min.js", "application/javascript; charset=utf-8", "var Longlink="},
		{"/socket.io/socket.io.min.js", "application/javascript; charset=utf-8", "Socket.IO v4"},
		{"/socket.io/socket.io.js", "application/javascript; charset=utf-8", "Socket.IO v4"},
		{"/demo/config.json", "application/json", `"account":"alice"`},
	} {
		r, err := http.Get(c.url + tt.path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(r.Body)
		r.Body.Close()
		if r.StatusCode != 200 || r.Header.Get("Content-Type") != tt.ctype || !strings.Contains(string(b), tt.contains) {
			t.Errorf("%s: %d %q, body has %q: %v", tt.path, r.StatusCode, r.Header.Get("Content-Type"), tt.contains, strings.Contains(string(b), tt.contains))
		}
	}
	if r, err := http.Get(c.url + "/nope"); err != nil || r.StatusCode != 404 {
		t.Fatalf("unknown path: %v %v", r, err)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"default", func(*Config) {}, ""},
		{"bad origin", func(c *Config) { c.AllowedOrigins = []string{"example.com"} }, "allowed_origins[0]"},
		{"bad cidr", func(c *Config) { c.TrustedProxies = []string{"10.0.0.0/33"} }, "trusted_proxies[0]"},
		{"tls half", func(c *Config) { c.TLSCert = "x.pem" }, "tls_cert, tls_key"},
		{"outbound", func(c *Config) { c.MaxOutbound = 10; c.MaxPayload = 100 }, "max_outbound"},
		{"path", func(c *Config) { c.Path = "socket.io" }, "path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.mod(&c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

// TestGatewayDrain checks that a drain kick closes only the transport (no
// DISCONNECT packet), so that socket.io-client reconnects elsewhere.
func TestGatewayDrain(t *testing.T) {
	c := startCore(t, nil)
	alice := dialSIO(t, c.url, loginReq(c, "alice", "d1"))
	alice.event("login")
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = c.gw.Shutdown(ctx)
	}()
	var k imapi.Kick
	if err := json.Unmarshal(alice.event("kick"), &k); err != nil || k.Code != imapi.ErrUnavailable {
		t.Fatalf("kick %+v %v", k, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		_, b, err := alice.c.Read(ctx)
		if err != nil {
			if websocket.CloseStatus(err) != websocket.StatusNormalClosure {
				t.Fatalf("close: %v", err)
			}
			return
		}
		if strings.HasPrefix(string(b), "41") {
			t.Fatal("a drain kick sent DISCONNECT: the client would not reconnect")
		}
	}
}

func TestConfigDecode(t *testing.T) {
	cfg := Default()
	text := "listen: 127.0.0.1:17711\ndemo_page: false\nping_interval: 10s\ntrusted_proxies: [127.0.0.1/32]\nallowed_origins: [\"https://chat.example.com\"]\n"
	if err := config.Decode("weblink.yaml", []byte(text), &cfg); err != nil {
		t.Fatal(err)
	}
	if *cfg.DemoPage || cfg.PingInterval.D() != 10*time.Second || cfg.Listen != "127.0.0.1:17711" || len(cfg.TrustedProxies) != 1 {
		t.Fatalf("decoded %+v", cfg)
	}
	bad := Default()
	if err := config.Decode("weblink.yaml", []byte("ping_intervall: 10s\n"), &bad); err == nil || !strings.Contains(err.Error(), "weblink.yaml:1") {
		t.Fatalf("unknown key: %v", err)
	}
}
