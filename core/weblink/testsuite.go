package weblink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/longlink/longlink/core/weblink/internal/server"
	"github.com/longlink/longlink/pkg/logging"
)

// TestSuiteServer serves what the two published protocol test suites expect
// of their reference servers, so that they can check this implementation:
// at /socket.io/ the Socket.IO protocol as the socket.io-protocol suite
// wants it (pingInterval 300ms, pingTimeout 200ms, connectTimeout 1s, any
// origin, namespaces "/" and "/custom", an "auth" event echoing the CONNECT
// payload, "message" → "message-back", "message-with-ack" acked), and at
// /engine.io/ the Engine.IO echo of the engine.io-protocol suite (same
// heartbeat, every message sent back). It is a lifecycle.Component;
// `longlink weblink-testsuite` runs it.
type TestSuiteServer struct {
	addr string
	log  *slog.Logger
	sio  *server.Server
	eio  *server.Server
	hs   *http.Server
	ln   net.Listener
	done chan struct{}
}

// NewTestSuiteServer prepares the server on addr (the suite uses localhost:3000).
func NewTestSuiteServer(addr string, log *slog.Logger) *TestSuiteServer {
	log = logging.OrDiscard(log)
	return &TestSuiteServer{addr: addr, log: log,
		sio: server.New(server.TestSuiteConfig(), server.TestSuiteHandler{}, log, nil),
		eio: server.New(server.EngineIOEchoConfig(), nil, log, nil)}
}

// Start implements lifecycle.Component.
func (t *TestSuiteServer) Start(context.Context) error {
	ln, err := net.Listen("tcp", t.addr)
	if err != nil {
		return fmt.Errorf("weblink test suite server: %w", err)
	}
	t.ln = ln
	mux := http.NewServeMux()
	mux.Handle("/socket.io/", t.sio)
	mux.Handle("/engine.io/", t.eio)
	t.hs = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	t.done = make(chan struct{})
	go func() {
		defer close(t.done)
		if err := t.hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.log.Error("serve", "err", err)
		}
	}()
	t.log.Info("protocol test suite server listening", "addr", ln.Addr().String(), "socket.io", "/socket.io/", "engine.io", "/engine.io/")
	return nil
}

// Addr is the bound address after Start.
func (t *TestSuiteServer) Addr() net.Addr { return t.ln.Addr() }

// Shutdown implements lifecycle.Component.
func (t *TestSuiteServer) Shutdown(ctx context.Context) error {
	if t.hs == nil {
		return nil
	}
	t.sio.Close()
	t.eio.Close()
	err := t.hs.Shutdown(ctx)
	<-t.done
	return err
}
