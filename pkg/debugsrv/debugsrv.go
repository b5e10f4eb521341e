// Package debugsrv serves a process's operational endpoints on their own
// listener, away from client traffic: /metrics (Prometheus), /healthz (the
// process is alive), /readyz (it should receive traffic; false while starting or
// draining), /debug/pprof and /debug/freeosmemory (POST: a GC that returns
// all free memory to the OS at once, so that a measurement of the RSS, e.g.
// memory per connection, does not depend on when the background scavenger
// last ran).
package debugsrv

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Server is the debug listener of one process.
type Server struct {
	srv   *http.Server
	ln    net.Listener
	ready atomic.Bool
	log   *slog.Logger
	done  chan struct{}
}

// New builds a debug server on an already-bound listener. checks are extra
// readiness conditions (for example "the LBS has a leader"); /readyz fails when
// the server is marked not ready or when any check returns an error.
func New(ln net.Listener, g prometheus.Gatherer, log *slog.Logger, checks ...func() error) *Server {
	s := &Server{ln: ln, log: log, done: make(chan struct{})}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !s.ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		for _, c := range checks {
			if err := c(); err != nil {
				http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("POST /debug/freeosmemory", func(w http.ResponseWriter, _ *http.Request) {
		debug.FreeOSMemory()
		_, _ = w.Write([]byte("ok\n"))
	})
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	return s
}

// Start serves in the background until Shutdown.
func (s *Server) Start() {
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("debug listener stopped", "err", err)
		}
	}()
}

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// SetReady flips /readyz. Components call SetReady(false) first when draining so
// that load balancers stop sending traffic before connections are shed.
func (s *Server) SetReady(v bool) { s.ready.Store(v) }

// Shutdown stops the listener and waits for in-flight requests.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	select {
	case <-s.done:
	case <-ctx.Done():
	}
	return err
}
