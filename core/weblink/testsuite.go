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

// TestSuiteServer serves the Socket.IO protocol with the configuration and
// behaviour that the published socket.io-protocol test suite expects of its
// reference server (pingInterval 300ms, pingTimeout 200ms, connectTimeout 1s,
// any origin, namespaces "/" and "/custom", an "auth" event echoing the
// CONNECT payload, "message" → "message-back", "message-with-ack" acked),
// so that the suite can check this implementation. It is a
// lifecycle.Component; `longlink weblink-testsuite` runs it.
type TestSuiteServer struct {
	addr string
	log  *slog.Logger
	srv  *server.Server
	hs   *http.Server
	ln   net.Listener
	done chan struct{}
}

// NewTestSuiteServer prepares the server on addr (the suite uses localhost:3000).
func NewTestSuiteServer(addr string, log *slog.Logger) *TestSuiteServer {
	log = logging.OrDiscard(log)
	return &TestSuiteServer{addr: addr, log: log, srv: server.New(server.TestSuiteConfig(), server.TestSuiteHandler{}, log, nil)}
}

// Start implements lifecycle.Component.
func (t *TestSuiteServer) Start(context.Context) error {
	ln, err := net.Listen("tcp", t.addr)
	if err != nil {
		return fmt.Errorf("weblink test suite server: %w", err)
	}
	t.ln = ln
	t.hs = &http.Server{Handler: t.srv, ReadHeaderTimeout: 10 * time.Second}
	t.done = make(chan struct{})
	go func() {
		defer close(t.done)
		if err := t.hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.log.Error("serve", "err", err)
		}
	}()
	t.log.Info("socket.io protocol test suite server listening", "addr", ln.Addr().String())
	return nil
}

// Addr is the bound address after Start.
func (t *TestSuiteServer) Addr() net.Addr { return t.ln.Addr() }

// Shutdown implements lifecycle.Component.
func (t *TestSuiteServer) Shutdown(ctx context.Context) error {
	if t.hs == nil {
		return nil
	}
	t.srv.Close()
	err := t.hs.Shutdown(ctx)
	<-t.done
	return err
}
