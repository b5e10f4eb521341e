// Package weblink is the IM core's Socket.IO endpoint for browsers: an
// Engine.IO v4 + Socket.IO v5 server (what socket.io-client v4 speaks) whose
// sockets log in, send requests and receive pushes through the gateway's
// session API, with the same ops, bodies and result codes as Link. It also
// serves the socket.io-client browser bundle and a demo chat page.
//
// See README.md for the protocol coverage, the mapping of IM operations to
// Socket.IO events, the configuration keys and the metrics.
package weblink

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pires/go-proxyproto"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/longlink/longlink/core/weblink/internal/server"
	"github.com/longlink/longlink/pkg/logging"
)

// DemoLogin is a ready-made login offered by the demo page (`longlink dev`).
type DemoLogin struct {
	AppKey  string `json:"appkey"`
	Account string `json:"account"`
	Token   string `json:"token"`
	// Rooms are chatrooms the page offers, with an entry token for Account.
	Rooms []DemoRoom `json:"rooms,omitempty"`
}

// DemoRoom is a chatroom the demo page can enter.
type DemoRoom struct {
	RoomID string `json:"room_id"`
	Token  string `json:"token"`
}

// Deps are WebLink's injected dependencies.
type Deps struct {
	// Gateway is the session hub (*gateway.Gateway). Required.
	Gateway    Sessions
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Listener, when set, is used instead of listening on Config.Listen.
	Listener net.Listener
	// DemoLogins, when set, lets the demo page offer these logins
	// (GET /demo/config.json). Only for development setups: it hands out tokens.
	DemoLogins func(ctx context.Context) ([]DemoLogin, error)
	// DemoLBS are the LBS URLs the demo page's SDK asks for entry points
	// (its own origin is the default link).
	DemoLBS []string
}

// WebLink is a running WebLink server: a lifecycle.Component.
type WebLink struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
	sio  *server.Server
	mux  *http.ServeMux
	im   *imHandler

	trusted []netip.Prefix
	cancel  context.CancelFunc

	mu           sync.Mutex
	stopped      bool
	shutdownOnce atomic.Bool
	ln           net.Listener
	httpSrv      *http.Server
	done         chan struct{}
}

// New validates cfg and builds the server; Start binds it.
func New(cfg Config, deps Deps) (*WebLink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("weblink config: %w", err)
	}
	cfg = cfg.withDefaults()
	if deps.Gateway == nil {
		return nil, errors.New("weblink: Deps.Gateway is required")
	}
	deps.Logger = logging.OrDiscard(deps.Logger)
	w := &WebLink{cfg: cfg, deps: deps, log: deps.Logger.With("component", "weblink")}
	for _, p := range cfg.TrustedProxies {
		w.trusted = append(w.trusted, netip.MustParsePrefix(p).Masked())
	}
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	w.im = &imHandler{gw: deps.Gateway, loginTimeout: cfg.LoginTimeout.D(), m: newMetrics(deps.Registerer), ctx: ctx}
	maxSessions, perIP := max(cfg.MaxSessions, 0), max(cfg.MaxSessionsPerIP, 0)
	w.sio = server.New(server.Config{
		Path:           cfg.Path,
		PingInterval:   cfg.PingInterval.D(),
		PingTimeout:    cfg.PingTimeout.D(),
		UpgradeTimeout: cfg.UpgradeTimeout.D(),
		ConnectTimeout: cfg.ConnectTimeout.D(),
		WriteTimeout:   cfg.WriteTimeout.D(),
		MaxPayload:     cfg.MaxPayload,
		MaxOutbound:    cfg.MaxOutbound,
		MaxSessions:    maxSessions,
		MaxPerIP:       perIP,
		AllowedOrigins: cfg.AllowedOrigins,
	}, w.im, w.log, server.NewMetrics(deps.Registerer))
	w.mux = http.NewServeMux()
	path := w.sio.Config().Path
	w.mux.HandleFunc("GET "+path+"socket.io.min.js", serveClientBundle)
	w.mux.HandleFunc("GET "+path+"socket.io.js", serveClientBundle)
	w.mux.HandleFunc("GET /sdk/longlink.min.js", serveSDKBundle)
	w.mux.Handle(path, w.sio)
	if *cfg.DemoPage {
		w.mux.HandleFunc("GET /{$}", serveDemoPage)
		w.mux.HandleFunc("GET /demo/config.json", w.serveDemoConfig)
	}
	return w, nil
}

// Handler is WebLink's HTTP handler, for mounting it in another server
// instead of Start's own listener.
func (w *WebLink) Handler() http.Handler { return http.HandlerFunc(w.serveHTTP) }

func (w *WebLink) serveHTTP(rw http.ResponseWriter, r *http.Request) {
	if xff := r.Header.Get("X-Forwarded-For"); xff != "" && w.isTrusted(r.RemoteAddr) {
		// nginx in front: the client is the last address it appended.
		parts := strings.Split(xff, ",")
		if ip, err := netip.ParseAddr(strings.TrimSpace(parts[len(parts)-1])); err == nil {
			r.RemoteAddr = netip.AddrPortFrom(ip, 0).String()
		}
	}
	w.mux.ServeHTTP(rw, r)
}

func (w *WebLink) isTrusted(addr string) bool {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return false
	}
	ip := ap.Addr().Unmap()
	for _, p := range w.trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// Start binds the listener and serves.
func (w *WebLink) Start(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.httpSrv != nil || w.stopped {
		return errors.New("weblink: already started")
	}
	ln := w.deps.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", w.cfg.Listen); err != nil {
			return fmt.Errorf("weblink: listen: %w", err)
		}
	}
	// PROXY headers only from trusted proxies; from anyone else the bytes
	// are not parsed as a header, so the request fails as bad HTTP.
	ln = &proxyproto.Listener{Listener: ln, ReadHeaderTimeout: 10 * time.Second,
		ConnPolicy: func(o proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) {
			if o.Upstream != nil && w.isTrusted(o.Upstream.String()) {
				return proxyproto.USE, nil
			}
			return proxyproto.SKIP, nil
		}}
	if w.cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(w.cfg.TLSCert, w.cfg.TLSKey)
		if err != nil {
			ln.Close()
			return fmt.Errorf("weblink: tls: %w", err)
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12,
			NextProtos: []string{"http/1.1"}})
	}
	w.ln = ln
	w.httpSrv = &http.Server{
		Handler:           w.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(w.log.Handler(), slog.LevelDebug),
	}
	w.done = make(chan struct{})
	go func() {
		defer close(w.done)
		if err := w.httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			w.log.Error("serve", "err", err)
		}
	}()
	w.log.Info("listening", "addr", ln.Addr().String(), "tls", w.cfg.TLSCert != "")
	return nil
}

// Addr is the bound address (after Start).
func (w *WebLink) Addr() net.Addr {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ln == nil {
		return nil
	}
	return w.ln.Addr()
}

// Sessions is the number of open Engine.IO sessions.
func (w *WebLink) Sessions() int { return w.sio.Sessions() }

// Shutdown stops accepting, closes the sessions spread over DrainTime (within
// ctx) so that clients reconnect elsewhere gradually, and waits for the
// connection goroutines.
func (w *WebLink) Shutdown(ctx context.Context) error {
	w.mu.Lock()
	srv, done := w.httpSrv, w.done
	w.stopped = true
	w.mu.Unlock()
	if srv == nil || !w.shutdownOnce.CompareAndSwap(false, true) {
		return nil
	}
	w.sio.Drain(ctx, w.cfg.DrainTime.D())
	w.cancel()
	err := srv.Shutdown(ctx)
	w.sio.Close()
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return err
}
