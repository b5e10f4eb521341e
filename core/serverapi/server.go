// Package serverapi is the server HTTP API that an app's own servers call:
// users and tokens, sending messages as a user or as system notifications,
// and history. Every request is signed with the app secret (see auth.go);
// errors are JSON {"code": …, "message": …} with the stable imapi codes.
// The API is described in openapi.yaml, which a test keeps in step with the
// routes served.
//
// It runs in two halves. The Front (front.go, roles.server_api) holds the
// HTTP listener, on gateway or front processes without services: it sends
// each request over the bus to the app's cluster (core/route: dedicated
// clusters, grayscale), exactly as it came. The Server, on every service
// node, authenticates it (signature, window, cluster-wide replay and rate
// checks) and answers it with the node's services and store.
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
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/longlink/longlink/core/imapi"

	"github.com/longlink/longlink/core/internal/buswire"
	"github.com/longlink/longlink/core/ratelimit"
	"github.com/longlink/longlink/core/route"
	"github.com/longlink/longlink/core/serverapi/internal/sign"
	"github.com/longlink/longlink/core/service"
	"github.com/longlink/longlink/core/store"
	"github.com/longlink/longlink/core/webhook"
	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/pkg/logging"
)

// Config tunes the server API; the front (the HTTP listener) and the
// service nodes read the parts noted. Keep it the same on every node.
type Config struct {
	// Listen is the front's HTTP listener. Default 127.0.0.1:7712.
	Listen string `yaml:"listen"`
	// MaxBodyBytes caps a request body (front and service nodes). Default
	// 64 KiB.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// ReadTimeout and WriteTimeout bound one request at the front.
	// Defaults 10s.
	ReadTimeout  config.Duration `yaml:"read_timeout"`
	WriteTimeout config.Duration `yaml:"write_timeout"`
	// ForwardTimeout bounds a request's trip to a service node and back
	// (front), and its handling there. Default 8s.
	ForwardTimeout config.Duration `yaml:"forward_timeout"`
	// Window is how far a request's timestamp may be from the server clock
	// (either way); nonces are remembered for twice as long, cluster-wide.
	// Default 5m.
	Window config.Duration `yaml:"window"`
	// NonceBucket is the JetStream KV bucket of used nonces. Default
	// LL_API_NONCES.
	NonceBucket string `yaml:"nonce_bucket"`
	// NonceStoreBytes bounds the bucket; full of live nonces, new requests
	// get 429. Default 64 MiB (about 300,000 nonces).
	NonceStoreBytes int64 `yaml:"nonce_store_bytes"`
	// AppRate is each app's request rate, per second, over the whole
	// cluster (core/ratelimit); 0 or less: no limit. Default 1000.
	AppRate float64 `yaml:"app_rate"`
	// MaxInFlight caps the requests one service node handles at once.
	// Default 256.
	MaxInFlight int `yaml:"max_in_flight"`
	// BusTimeout bounds one bus request a handler makes (group operations
	// on behalf of an account). Default 5s.
	BusTimeout config.Duration `yaml:"bus_timeout"`
}

// Default returns the single-node defaults.
func Default() Config {
	return Config{
		Listen:          "127.0.0.1:7712",
		MaxBodyBytes:    64 << 10,
		ReadTimeout:     config.Duration(10 * time.Second),
		WriteTimeout:    config.Duration(10 * time.Second),
		ForwardTimeout:  config.Duration(8 * time.Second),
		Window:          config.Duration(5 * time.Minute),
		NonceBucket:     "LL_API_NONCES",
		NonceStoreBytes: 64 << 20,
		AppRate:         1000,
		MaxInFlight:     256,
		BusTimeout:      config.Duration(5 * time.Second),
	}
}

func (c *Config) applyDefaults() {
	d := Default()
	if c.Window == 0 {
		c.Window = d.Window
	}
	if c.NonceBucket == "" {
		c.NonceBucket = d.NonceBucket
	}
	if c.NonceStoreBytes == 0 {
		c.NonceStoreBytes = d.NonceStoreBytes
	}
	if c.ForwardTimeout == 0 {
		c.ForwardTimeout = d.ForwardTimeout
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = d.MaxInFlight
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
	if !sign.ValidToken(c.NonceBucket, 64) {
		errs.Addf("serverapi.nonce_bucket: %q: want 1-64 of A-Z a-z 0-9 _ -", c.NonceBucket)
	}
	if c.NonceStoreBytes < 1<<20 {
		errs.Addf("serverapi.nonce_store_bytes: at least 1 MiB")
	}
	if c.ForwardTimeout < 0 || c.ForwardTimeout.D() > c.WriteTimeout.D() {
		errs.Addf("serverapi.forward_timeout: %s: must not be negative nor above write_timeout (%s)", c.ForwardTimeout.D(), c.WriteTimeout.D())
	}
	if c.MaxInFlight < 0 {
		errs.Addf("serverapi.max_in_flight: must not be negative")
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

// Deps are a service node's server API dependencies.
type Deps struct {
	Service *service.Service
	Store   store.Store
	// NATS carries the forwarded requests and the group operations sent
	// over the bus as the acting account, exactly as a gateway sends them.
	NATS *nats.Conn
	// JetStream holds the cluster-wide nonces; Replicas is their bucket's
	// replica count (bus.jetstream_replicas).
	JetStream jetstream.JetStream
	Replicas  int
	// Limits enforces AppRate across the cluster (core/ratelimit).
	Limits *ratelimit.Limiter
	// Node is this service node's cluster, version and canary flag: it
	// takes the API requests of the routes it serves (core/route).
	Node       route.Node
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
	// Calls, when set, serves POST /v1/turn/credentials: time-limited TURN
	// credentials that the app's server hands to its clients (core/callsvc).
	Calls CallIssuer
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

// Server is the server API on a service node: it answers the requests the
// fronts forward over the bus.
type Server struct {
	cfg     Config
	deps    Deps
	log     *slog.Logger
	metrics *metrics
	now     func() time.Time
	replay  *replayGuard
	mux     *http.ServeMux
	routes  []Route
	sem     chan struct{}

	mu   sync.Mutex
	subs []*nats.Subscription
	wg   sync.WaitGroup // requests in flight
}

// routeKey carries a forwarded request's route in its context: the bus
// requests its handler makes take the same route (busRoute).
type routeKey struct{}

// busRoute is the route of the request whose context ctx is.
func (s *Server) busRoute(ctx context.Context) route.Route {
	if rt, ok := ctx.Value(routeKey{}).(route.Route); ok {
		return rt
	}
	return route.Route{Cluster: s.deps.Node.Cluster}
}

// New builds the API with its routes; Start subscribes it to the bus.
func New(cfg Config, deps Deps) (*Server, error) {
	cfg.applyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("serverapi: %w", err)
	}
	if deps.Service == nil || deps.Store == nil || deps.NATS == nil || deps.JetStream == nil {
		return nil, errors.New("serverapi: Service, Store, NATS and JetStream are required")
	}
	if len(deps.Node.Routes()) == 0 {
		return nil, errors.New("serverapi: the node serves no route (a canary needs a version)")
	}
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
		cfg: cfg, deps: deps, log: logging.OrDiscard(deps.Logger).With("component", "serverapi"), metrics: m, now: now,
		mux: http.NewServeMux(), sem: make(chan struct{}, cfg.MaxInFlight),
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

// Start opens the nonce bucket and subscribes to the API subjects of the
// node's routes.
func (s *Server) Start(ctx context.Context) error {
	rg, err := openReplayGuard(ctx, s.deps.JetStream, s.cfg.NonceBucket, 2*s.cfg.Window.D(), s.cfg.NonceStoreBytes, s.deps.Replicas)
	if err != nil {
		return err
	}
	s.replay = rg
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rt := range s.deps.Node.Routes() {
		rt := rt
		sub, err := s.deps.NATS.QueueSubscribe(rt.APISubject(), buswire.ServiceQueue, func(m *nats.Msg) { s.dispatch(rt, m) })
		if err != nil {
			s.unsubscribeLocked()
			return fmt.Errorf("serverapi: subscribe %s: %w", rt.APISubject(), err)
		}
		_ = sub.SetPendingLimits(64<<10, 256<<20)
		s.subs = append(s.subs, sub)
	}
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := s.deps.NATS.FlushWithContext(fctx); err != nil {
		s.unsubscribeLocked()
		return fmt.Errorf("serverapi: flush subscriptions: %w", err)
	}
	return nil
}

func (s *Server) unsubscribeLocked() {
	for _, sub := range s.subs {
		_ = sub.Unsubscribe()
	}
	s.subs = nil
}

// Shutdown leaves the queue groups (fronts send new requests to other
// nodes) and waits for the requests in flight.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	subs := s.subs
	s.subs = nil
	s.mu.Unlock()
	for _, sub := range subs {
		_ = sub.Drain()
	}
	done := make(chan struct{})
	go func() {
		for _, sub := range subs {
			for sub.IsValid() && ctx.Err() == nil {
				time.Sleep(5 * time.Millisecond) // Drain has no completion signal
			}
		}
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("serverapi: shutdown: %w", ctx.Err())
	}
}

// dispatch takes an in-flight slot (holding the subscription when the
// node is saturated) and answers the request on its own goroutine.
func (s *Server) dispatch(rt route.Route, m *nats.Msg) {
	s.sem <- struct{}{}
	s.wg.Add(1)
	go func() {
		defer func() { <-s.sem; s.wg.Done() }()
		s.answer(rt, m)
	}()
}

// answer serves one forwarded request and replies on the bus.
func (s *Server) answer(rt route.Route, m *nats.Msg) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ForwardTimeout.D())
	defer cancel()
	rec := newRecorder()
	req, err := decodeForward(context.WithValue(ctx, routeKey{}, rt), m, s.cfg.MaxBodyBytes)
	if err != nil {
		s.metrics.requests.WithLabelValues("malformed", strconv.Itoa(int(imapi.ErrBadRequest))).Inc()
		writeError(rec, imapi.Errorf(imapi.ErrBadRequest, "malformed forwarded request"))
	} else {
		s.mux.ServeHTTP(rec, req)
	}
	reply := rec.reply()
	if max := s.deps.NATS.MaxPayload(); int64(len(reply.Data))+1024 > max {
		rec = newRecorder()
		writeError(rec, imapi.Errorf(imapi.ErrTooLarge, "the answer exceeds the bus's %d bytes: ask for less (a smaller limit)", max))
		reply = rec.reply()
	}
	if err := m.RespondMsg(reply); err != nil {
		s.log.Warn("reply not sent", "err", err)
	}
}

// serve authenticates a request and runs its handler.
func (s *Server) serve(w http.ResponseWriter, r *http.Request, name string, h HandlerFunc) {
	start := time.Now()
	code := imapi.OK
	defer func() {
		s.metrics.requests.WithLabelValues(name, strconv.Itoa(int(code))).Inc()
		s.metrics.latency.WithLabelValues(name).Observe(time.Since(start).Seconds())
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
	// The rate before the nonce: a flood is refused without filling the
	// nonce bucket.
	if s.deps.Limits != nil && !s.deps.Limits.Allow(r.Context(), "serverapi", ah.AppKey, s.cfg.AppRate) {
		fail(&imapi.Error{Code: imapi.ErrRateLimited, Message: "the app's request rate", RetryAfterMs: 1000})
		return
	}
	res, err := s.replay.claim(r.Context(), ah.AppKey, ah.Nonce)
	switch {
	case err != nil:
		s.log.Warn("nonce check failed", "err", err)
		s.metrics.authFailures.WithLabelValues("nonce_store_unavailable").Inc()
		fail(imapi.Errorf(imapi.ErrUnavailable, "replay check unavailable"))
		return
	case res == nonceReplayed:
		s.metrics.authFailures.WithLabelValues("replay").Inc()
		fail(imapi.Errorf(imapi.ErrUnauthorized, "nonce already used"))
		return
	case res == nonceFull:
		s.metrics.authFailures.WithLabelValues("nonce_store_full").Inc()
		fail(imapi.Errorf(imapi.ErrRateLimited, "too many requests in the signing window"))
		return
	}
	resp, err := h(r.Context(), &Request{App: app, Body: body, HTTP: r})
	if err != nil {
		var ie *imapi.Error
		if !errors.As(err, &ie) {
			s.log.Error("request failed", "route", name, "err", err)
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
