package server

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// TestProtocolSuite replays the Socket.IO cases of the published
// socket.io-protocol test suite against TestSuiteHandler.
func TestProtocolSuite(t *testing.T) {
	srv := New(TestSuiteConfig(), TestSuiteHandler{}, nil, nil)
	hs := httptest.NewServer(srv)
	t.Cleanup(func() { hs.CloseClientConnections(); srv.Close(); hs.Close() })
	url := hs.URL + "/socket.io/?EIO=4&transport=websocket"

	open := func(t *testing.T) *websocket.Conn {
		c := wsDial(t, url)
		wsRead(t, c)
		return c
	}
	connected := func(t *testing.T) *websocket.Conn {
		c := open(t)
		wsWrite(t, c, websocket.MessageText, "40")
		if _, m := wsRead(t, c); !strings.HasPrefix(m, `40{"sid":"`) {
			t.Fatalf("connect %q", m)
		}
		if _, m := wsRead(t, c); m != `42["auth",{}]` {
			t.Fatalf("auth packet %q", m)
		}
		return c
	}
	readSkipPing := func(t *testing.T, c *websocket.Conn) (websocket.MessageType, string) {
		for {
			typ, m := wsRead(t, c)
			if m != "2" {
				return typ, m
			}
		}
	}
	closed := func(t *testing.T, c *websocket.Conn) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		for {
			if _, _, err := c.Read(ctx); err != nil {
				if ctx.Err() != nil {
					t.Fatal("connection not closed")
				}
				return
			}
		}
	}

	t.Run("connect with payload to a custom namespace", func(t *testing.T) {
		c := open(t)
		wsWrite(t, c, websocket.MessageText, `40/custom,{"token":"abc"}`)
		if _, m := wsRead(t, c); !strings.HasPrefix(m, `40/custom,{"sid":"`) {
			t.Fatalf("connect %q", m)
		}
		if _, m := wsRead(t, c); m != `42/custom,["auth",{"token":"abc"}]` {
			t.Fatalf("auth %q", m)
		}
	})
	t.Run("unknown namespace", func(t *testing.T) {
		c := open(t)
		wsWrite(t, c, websocket.MessageText, "40/random")
		if _, m := wsRead(t, c); m != `44/random,{"message":"Invalid namespace"}` {
			t.Fatalf("got %q", m)
		}
	})
	t.Run("invalid handshake", func(t *testing.T) {
		c := open(t)
		wsWrite(t, c, websocket.MessageText, "4abc")
		closed(t, c)
	})
	t.Run("no handshake", func(t *testing.T) {
		closed(t, open(t))
	})
	t.Run("disconnect from the main namespace", func(t *testing.T) {
		c := connected(t)
		wsWrite(t, c, websocket.MessageText, "41")
		if _, m := wsRead(t, c); m != "2" {
			t.Fatalf("got %q, want a ping on the still open connection", m)
		}
	})
	t.Run("disconnect from a custom namespace", func(t *testing.T) {
		c := connected(t)
		wsWrite(t, c, websocket.MessageText, "40/custom")
		readSkipPing(t, c)
		readSkipPing(t, c)
		wsWrite(t, c, websocket.MessageText, "41/custom")
		wsWrite(t, c, websocket.MessageText, `42["message","message to main namespace"]`)
		if _, m := readSkipPing(t, c); m != `42["message-back","message to main namespace"]` {
			t.Fatalf("got %q", m)
		}
	})
	t.Run("plain-text packet", func(t *testing.T) {
		c := connected(t)
		wsWrite(t, c, websocket.MessageText, `42["message",1,"2",{"3":[true]}]`)
		if _, m := readSkipPing(t, c); m != `42["message-back",1,"2",{"3":[true]}]` {
			t.Fatalf("got %q", m)
		}
	})
	t.Run("binary attachments", func(t *testing.T) {
		c := connected(t)
		wsWrite(t, c, websocket.MessageText, `452-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]`)
		wsWrite(t, c, websocket.MessageBinary, "\x01\x02\x03")
		wsWrite(t, c, websocket.MessageBinary, "\x04\x05\x06")
		want := []string{`452-["message-back",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]`, "\x01\x02\x03", "\x04\x05\x06"}
		for _, w := range want {
			if _, m := readSkipPing(t, c); m != w {
				t.Fatalf("got %q, want %q", m, w)
			}
		}
	})
	t.Run("ack", func(t *testing.T) {
		c := connected(t)
		wsWrite(t, c, websocket.MessageText, `42456["message-with-ack",1,"2",{"3":[false]}]`)
		if _, m := readSkipPing(t, c); m != `43456[1,"2",{"3":[false]}]` {
			t.Fatalf("got %q", m)
		}
	})
	t.Run("binary ack", func(t *testing.T) {
		c := connected(t)
		wsWrite(t, c, websocket.MessageText, `452-789["message-with-ack",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]`)
		wsWrite(t, c, websocket.MessageBinary, "\x01\x02\x03")
		wsWrite(t, c, websocket.MessageBinary, "\x04\x05\x06")
		want := []string{`462-789[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]`, "\x01\x02\x03", "\x04\x05\x06"}
		for _, w := range want {
			if _, m := readSkipPing(t, c); m != w {
				t.Fatalf("got %q, want %q", m, w)
			}
		}
	})
	for _, bad := range []string{"4abc", "42{}", `42abc["message-with-ack",1,"2",{"3":[false]}]`} {
		t.Run("invalid format "+bad, func(t *testing.T) {
			c := connected(t)
			wsWrite(t, c, websocket.MessageText, bad)
			closed(t, c)
		})
	}
}

// writeRecorder records what the server writes on its connections, one
// entry per Write call.
type writeRecorder struct {
	net.Listener
	writes chan []byte
}

func (l *writeRecorder) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &recordedConn{Conn: c, writes: l.writes}, nil
}

type recordedConn struct {
	net.Conn
	writes chan []byte
}

func (c *recordedConn) Write(p []byte) (int, error) {
	select {
	case c.writes <- append([]byte(nil), p...):
	default:
	}
	return c.Conn.Write(p)
}

// TestConnectAckWrittenAlone: as the reference server does, the CONNECT ack
// goes out in a write of its own and what the handler emits on connect (the
// test suite's "auth" event) in a later one. A client that handles one
// message per read event (the protocol test suite's) missed the second when
// both came in one segment.
func TestConnectAckWrittenAlone(t *testing.T) {
	srv := New(TestSuiteConfig(), TestSuiteHandler{}, nil, nil)
	hs := httptest.NewUnstartedServer(srv)
	rec := &writeRecorder{Listener: hs.Listener, writes: make(chan []byte, 64)}
	hs.Listener = rec
	hs.Start()
	t.Cleanup(func() { hs.CloseClientConnections(); srv.Close(); hs.Close() })
	c := wsDial(t, hs.URL+"/socket.io/?EIO=4&transport=websocket")
	wsRead(t, c)
	wsWrite(t, c, websocket.MessageText, "40")
	if _, m := wsRead(t, c); !strings.HasPrefix(m, `40{"sid":"`) {
		t.Fatalf("connect %q", m)
	}
	if _, m := wsRead(t, c); m != `42["auth",{}]` {
		t.Fatalf("auth %q", m)
	}
	for {
		select {
		case w := <-rec.writes:
			if !bytes.Contains(w, []byte(`40{"sid":"`)) {
				continue
			}
			if bytes.Contains(w, []byte(`42["auth"`)) {
				t.Fatalf("CONNECT ack and the first emit in one write: %q", w)
			}
			return
		default:
			t.Fatal("no write carried the CONNECT ack")
		}
	}
}

// TestEngineIOEcho replays the engine.io-protocol test suite's message and
// upgrade cases against the Engine.IO echo server it expects at /engine.io/.
func TestEngineIOEcho(t *testing.T) {
	srv := New(EngineIOEchoConfig(), nil, nil, nil)
	hs := httptest.NewServer(srv)
	t.Cleanup(func() { hs.CloseClientConnections(); srv.Close(); hs.Close() })
	base := hs.URL + "/engine.io/?EIO=4&transport="
	poll := func(t *testing.T) string {
		r := do(t, "GET", base+"polling", "", nil)
		if r.status != 200 || !strings.HasPrefix(r.body, "0{") {
			t.Fatalf("handshake %d %q", r.status, r.body)
		}
		var open struct {
			SID string `json:"sid"`
		}
		if err := json.Unmarshal([]byte(r.body[1:]), &open); err != nil {
			t.Fatal(err)
		}
		return open.SID
	}
	for _, body := range []string{"4hello", "4test1\x1e4test2\x1e4test3", "4hello\x1ebAQIDBA=="} {
		t.Run("polling "+body, func(t *testing.T) {
			u := base + "polling&sid=" + poll(t)
			if r := do(t, "POST", u, body, nil); r.status != 200 || r.body != "ok" {
				t.Fatalf("post %d %q", r.status, r.body)
			}
			if r := do(t, "GET", u, "", nil); r.status != 200 || r.body != body {
				t.Fatalf("echo %d %q, want %q", r.status, r.body, body)
			}
		})
	}
	t.Run("websocket", func(t *testing.T) {
		c := wsDial(t, strings.Replace(base, "http", "ws", 1)+"websocket")
		wsRead(t, c)
		wsWrite(t, c, websocket.MessageText, "4hello")
		if _, m := wsRead(t, c); m != "4hello" {
			t.Fatalf("text echo %q", m)
		}
		wsWrite(t, c, websocket.MessageBinary, "\x01\x02\x03\x04")
		if typ, m := wsRead(t, c); typ != websocket.MessageBinary || m != "\x01\x02\x03\x04" {
			t.Fatalf("binary echo %v %q", typ, m)
		}
	})
	t.Run("upgrade", func(t *testing.T) {
		sid := poll(t)
		c := wsDial(t, strings.Replace(base, "http", "ws", 1)+"websocket&sid="+sid)
		wsWrite(t, c, websocket.MessageText, "2probe")
		if _, m := wsRead(t, c); m != "3probe" {
			t.Fatalf("probe %q", m)
		}
		if r := do(t, "GET", base+"polling&sid="+sid, "", nil); r.status != 200 || r.body != "6" {
			t.Fatalf("poll during upgrade %d %q", r.status, r.body)
		}
		wsWrite(t, c, websocket.MessageText, "5")
		wsWrite(t, c, websocket.MessageText, "4hello")
		if _, m := wsRead(t, c); m != "4hello" {
			t.Fatalf("echo after upgrade %q", m)
		}
	})
	t.Run("no Socket.IO connect timeout", func(t *testing.T) {
		// The echo has no Socket.IO layer: a session that sends no CONNECT
		// lives on while it answers pings.
		c := wsDial(t, strings.Replace(base, "http", "ws", 1)+"websocket")
		wsRead(t, c)
		for range 5 { // 5 pings: 1.5s, past TestSuiteConfig's connect timeout
			if _, m := wsRead(t, c); m != "2" {
				t.Fatalf("got %q, want a ping", m)
			}
			wsWrite(t, c, websocket.MessageText, "3")
		}
	})
}
