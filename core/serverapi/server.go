// Package serverapi is the server HTTP API that an app's own servers call:
// users and tokens, sending messages as a user or as system notifications,
// and history. Every request is signed with the app secret (see auth.go);
// errors are JSON {"code": …, "message": …} with the stable imapi codes.
// The API is described in openapi.yaml, which a test keeps in step with the
// routes served.
package serverapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/serverapi/internal/sign"
	"github.com/longlink/longlink/core/service"
	"github.com/longlink/longlink/core/store"
	"github.com/longlink/longlink/core/webhook"
	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/pkg/logging"
)

// Config tunes the server API.
type Config struct {
	// Listen is the HTTP listener. Default 127.0.0.1:7712; "" serves no
	// listener (the composition root mounts Handler itself).
	Listen string `yaml:"listen"`
	// Window is how far a request's timestamp may be from the server clock
	// (either way); nonces are remembered for twice as long. Default 5m.
	Window config.Duration `yaml:"window"`
	// NonceCacheSize bounds the remembered nonces. Default 200000.
	NonceCacheSize int `yaml:"nonce_cache_size"`
	// MaxBodyBytes caps a request body. Default 64 KiB.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// ReadTimeout and WriteTimeout bound one request. Defaults 10s.
	ReadTimeout  config.Duration `yaml:"read_timeout"`
	WriteTimeout config.Duration `yaml:"write_timeout"`
	// Cluster is the app service cluster that bus requests (group
	// operations on behalf of an account) go to. Default "default".
	Cluster string `yaml:"cluster"`
	// BusTimeout bounds one bus request. Default 5s.
	BusTimeout config.Duration `yaml:"bus_timeout"`
}

// Default returns the single-node defaults.
func Default() Config {
	return Config{
		Listen:         "127.0.0.1:7712",
		Window:         config.Duration(5 * time.Minute),
		NonceCacheSize: 200000,
		MaxBodyBytes:   64 << 10,
		ReadTimeout:    config.Duration(10 * time.Second),
		WriteTimeout:   config.Duration(10 * time.Second),
		Cluster:        imapi.DefaultCluster,
		BusTimeout:     config.Duration(5 * time.Second),
	}
}

func (c *Config) applyDefaults() {
	d := Default()
	if c.Window == 0 {
		c.Window = d.Window
	}
	if c.NonceCacheSize == 0 {
		c.NonceCacheSize = d.NonceCacheSize
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = d.MaxBodyBytes
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = d.ReadTimeout
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = d.WriteTimeout
	}
	if c.Cluster == "" {
		c.Cluster = d.Cluster
	}
	if c.BusTimeout == 0 {
		c.BusTimeout = d.BusTimeout
	}
}

// Validate reports every problem at once.
func (c *Config) Validate() error {
	var errs config.Errors
	if c.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Listen); err != nil {
			errs.Addf("serverapi.listen: %v", err)
		}
	}
	if c.Window.D() < time.Second || c.Window.D() > time.Hour {
		errs.Addf("serverapi.window: %v not in 1s..1h", c.Window.D())
	}
	if c.NonceCacheSize < 1000 {
		errs.Addf("serverapi.nonce_cache_size: at least 1000")
	}
	if c.MaxBodyBytes < 1024 {
		errs.Addf("serverapi.max_body_bytes: at least 1024")
	}
	if c.ReadTimeout <= 0 || c.WriteTimeout <= 0 {
		errs.Addf("serverapi.read_timeout, write_timeout: must be positive")
	}
	if c.BusTimeout < 0 {
		errs.Addf("serverapi.bus_timeout: must not be negative")
	}
	return errs.Err()
}

// Deps are the server API's injected dependencies.
type Deps struct {
	Service    *service.Service
	Store      store.Store
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Listener, when set, is used instead of binding Config.Listen.
	Listener net.Listener
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
	// Calls, when set, serves POST /v1/turn/credentials: time-limited TURN
	// credentials that the app's server hands to its clients (core/callsvc).
	Calls CallIssuer
	// NATS, when set, serves the group routes: group operations sent over
	// the bus as the acting account, exactly as a gateway sends them.
	NATS *nats.Conn
	// DeadLetters, when set, serves the app's webhook dead letters: list them
	// and replay one (core/webhook).
	DeadLetters DeadLetterQueue
}

// DeadLetterQueue is the part of core/webhook that operators reach through
// the server API.
type DeadLetterQueue interface {
	DeadLetters(ctx context.Context, appkey string, limit int) ([]webhook.DeadLetter, error)
	Replay(ctx context.Context, appkey, id string) error
}

// CallIssuer issues TURN credentials for an authenticated app.
type CallIssuer interface {
	IssueForApp(ctx context.Context, appkey string, body []byte) (any, error)
}

// Request is an authenticated call: its app and its (size-limited) body.
type Request struct {
	App  store.App
	Body []byte
	HTTP *http.Request
}

// HandlerFunc answers an authenticated request with a JSON-encodable value
// or an error (an *imapi.Error for a client error).
type HandlerFunc func(ctx context.Context, r *Request) (any, error)

// Route is one served endpoint; the pattern uses net/http ServeMux syntax.
type Route struct {
	Method  string
	Pattern string
}

// Server is the server API.
type Server struct {
	cfg     Config
	deps    Deps
	log     *slog.Logger
	metrics *metrics
	now     func() time.Time
	nonces  *sign.NonceCache
	mux     *http.ServeMux
	routes  []Route

	mu   sync.Mutex
	srv  *http.Server
	ln   net.Listener
	done chan struct{}
}

// New builds the API with its routes; Start serves it on Config.Listen.
func New(cfg Config, deps Deps) (*Server, error) {
	cfg.applyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("serverapi: %w", err)
	}
	if deps.Service == nil || deps.Store == nil {
		return nil, errors.New("serverapi: Service and Store are required")
	}
	log := logging.OrDiscard(deps.Logger)
	reg := deps.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("serverapi: %w", err)
	}
	now := deps.Now
	if now == nil {
		now = time.Now
	}
	s := &Server{
		cfg: cfg, deps: deps, log: log.With("component", "serverapi"), metrics: m, now: now,
		nonces: sign.NewNonceCache(cfg.NonceCacheSize, 2*cfg.Window.D()),
		mux:    http.NewServeMux(),
	}
	s.routeV1()
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.metrics.requests.WithLabelValues("unknown", strconv.Itoa(int(imapi.ErrNotFound))).Inc()
		writeError(w, imapi.Errorf(imapi.ErrNotFound, "no such endpoint"))
	})
	return s, nil
}

// Handle adds an authenticated endpoint (later API areas register theirs
// here before Start). pattern is a ServeMux path such as /v1/rooms/{id}.
func (s *Server) Handle(method, pattern string, h HandlerFunc) {
	s.routes = append(s.routes, Route{Method: method, Pattern: pattern})
	name := method + " " + pattern
	s.mux.HandleFunc(name, func(w http.ResponseWriter, r *http.Request) { s.serve(w, r, name, h) })
}

// Routes lists the served endpoints.
func (s *Server) Routes() []Route { return append([]Route(nil), s.routes...) }

// ServeHTTP makes the Server an http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Start binds the listener (unless Config.Listen is empty) and serves.
func (s *Server) Start(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ln := s.deps.Listener
	if ln == nil {
		if s.cfg.Listen == "" {
			return nil
		}
		var err error
		ln, err = net.Listen("tcp", s.cfg.Listen)
		if err != nil {
			return fmt.Errorf("serverapi: %w", err)
		}
	}
	s.ln = ln
	s.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       s.cfg.ReadTimeout.D(),
		WriteTimeout:      s.cfg.WriteTimeout.D(),
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	srv, done := s.srv, make(chan struct{})
	s.done = done
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("serve", "err", err)
		}
	}()
	s.log.Info("server API listening", "addr", ln.Addr().String())
	return nil
}

// Addr is the bound address ("" before Start or without a listener).
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Shutdown stops accepting and waits for requests in flight.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	srv, done := s.srv, s.done
	s.srv = nil
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	err := srv.Shutdown(ctx)
	<-done
	if err != nil {
		return fmt.Errorf("serverapi: shutdown: %w", err)
	}
	return nil
}

// serve authenticates a request and runs its handler.
func (s *Server) serve(w http.ResponseWriter, r *http.Request, route string, h HandlerFunc) {
	start := time.Now()
	code := imapi.OK
	defer func() {
		s.metrics.requests.WithLabelValues(route, strconv.Itoa(int(code))).Inc()
		s.metrics.latency.WithLabelValues(route).Observe(time.Since(start).Seconds())
	}()
	fail := func(e *imapi.Error) {
		code = e.Code
		writeError(w, e)
	}
	ah, aerr := sign.Parse(r.Header)
	if aerr != nil {
		s.metrics.authFailures.WithLabelValues("headers").Inc()
		fail(aerr)
		return
	}
	now := s.now()
	if d := now.Unix() - ah.Timestamp; d > int64(s.cfg.Window.D()/time.Second) || -d > int64(s.cfg.Window.D()/time.Second) {
		s.metrics.authFailures.WithLabelValues("timestamp").Inc()
		fail(imapi.Errorf(imapi.ErrUnauthorized, "timestamp outside the allowed window"))
		return
	}
	app, err := s.deps.Service.App(r.Context(), ah.AppKey)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			s.metrics.authFailures.WithLabelValues("appkey").Inc()
			fail(imapi.Errorf(imapi.ErrUnauthorized, "unknown appkey"))
		} else {
			s.log.Error("app lookup", "err", err)
			fail(imapi.Errorf(imapi.ErrUnavailable, ""))
		}
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			s.metrics.oversize.Inc()
			fail(imapi.Errorf(imapi.ErrTooLarge, "body exceeds %d bytes", s.cfg.MaxBodyBytes))
		} else {
			fail(imapi.Errorf(imapi.ErrBadRequest, "read body: %v", err))
		}
		return
	}
	if !sign.Verify(app.Secret, r.Method, r.RequestURI, ah, body) {
		s.metrics.authFailures.WithLabelValues("checksum").Inc()
		fail(imapi.Errorf(imapi.ErrUnauthorized, "bad checksum"))
		return
	}
	switch s.nonces.Check(ah.AppKey+"\x00"+ah.Nonce, now) {
	case sign.NonceReplayed:
		s.metrics.authFailures.WithLabelValues("replay").Inc()
		fail(imapi.Errorf(imapi.ErrUnauthorized, "nonce already used"))
		return
	case sign.NonceFull:
		s.metrics.authFailures.WithLabelValues("nonce_cache_full").Inc()
		fail(imapi.Errorf(imapi.ErrRateLimited, "too many requests in the signing window"))
		return
	}
	resp, err := h(r.Context(), &Request{App: app, Body: body, HTTP: r})
	if err != nil {
		var ie *imapi.Error
		if !errors.As(err, &ie) {
			s.log.Error("request failed", "route", route, "err", err)
			ie = imapi.Errorf(imapi.ErrInternal, "")
		}
		fail(ie)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if resp == nil {
		resp = struct{}{}
	}
	_ = json.NewEncoder(w).Encode(resp)
}

// HTTPStatus maps an imapi code to the HTTP status of its error response.
func HTTPStatus(c imapi.Code) int {
	switch c {
	case imapi.ErrBadRequest, imapi.ErrUnauthorized, imapi.ErrForbidden, imapi.ErrNotFound, imapi.ErrConflict,
		imapi.ErrTooLarge, imapi.ErrRateLimited, imapi.ErrRejected, imapi.ErrInternal, imapi.ErrUnavailable, imapi.ErrTimeout:
		return int(c)
	case imapi.ErrUserDisabled, imapi.ErrBlocked, imapi.ErrInviteForbidden:
		return http.StatusForbidden
	case imapi.ErrNotFriends:
		return http.StatusNotFound
	case imapi.ErrRecallExpired, imapi.ErrGroupFull:
		return http.StatusConflict
	}
	return http.StatusBadRequest
}

func writeError(w http.ResponseWriter, e *imapi.Error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(HTTPStatus(e.Code))
	_ = json.NewEncoder(w).Encode(e)
}
