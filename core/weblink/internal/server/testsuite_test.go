package server

import (
	"context"
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
