package serverapi

import (
	"context"
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
	"github.com/longlink/longlink/core/route"
	"github.com/longlink/longlink/core/serverapi/internal/sign"
	"github.com/longlink/longlink/pkg/logging"
)

// FrontDeps are the front's dependencies.
type FrontDeps struct {
	NATS *nats.Conn
	// Routes sends each app's requests to its cluster (and a grayscale
	// version when a rule moves the whole app).
	Routes     *route.Table
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Listener, when set, is used instead of binding Config.Listen.
	Listener net.Listener
}

// Front is the server API's HTTP listener: it forwards every request, as it
// came, to a service node of the app's cluster and writes back the answer.
// It holds no secret and no store; a malformed appkey header or an
// oversized body is refused here, everything else is the service node's to
// judge.
type Front struct {
	cfg  Config
	deps FrontDeps
	log  *slog.Logger
	m    *frontMetrics

	mu   sync.Mutex
	srv  *http.Server
	ln   net.Listener
	done chan struct{}
}

// NewFront validates cfg; Start listens.
func NewFront(cfg Config, deps FrontDeps) (*Front, error) {
	cfg.applyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("serverapi: %w", err)
	}
	if deps.NATS == nil || deps.Routes == nil {
		return nil, errors.New("serverapi: NATS and Routes are required")
	}
	if cfg.Listen == "" && deps.Listener == nil {
		return nil, errors.New("serverapi: the front needs listen")
	}
	reg := deps.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m, err := newFrontMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("serverapi: %w", err)
	}
	return &Front{cfg: cfg, deps: deps, log: logging.OrDiscard(deps.Logger).With("component", "serverapi-front"), m: m}, nil
}

// Start binds the listener and serves.
func (f *Front) Start(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	ln := f.deps.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", f.cfg.Listen); err != nil {
			return fmt.Errorf("serverapi: %w", err)
		}
	}
	f.ln = ln
	f.srv = &http.Server{
		Handler:           f,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       f.cfg.ReadTimeout.D(),
		WriteTimeout:      f.cfg.WriteTimeout.D(),
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(f.log.Handler(), slog.LevelWarn),
	}
	srv, done := f.srv, make(chan struct{})
	f.done = done
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			f.log.Error("serve", "err", err)
		}
	}()
	f.log.Info("server API listening", "addr", ln.Addr().String())
	return nil
}

// Addr is the bound address ("" before Start).
func (f *Front) Addr() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ln == nil {
		return ""
	}
	return f.ln.Addr().String()
}

// Shutdown stops accepting and waits for requests in flight.
func (f *Front) Shutdown(ctx context.Context) error {
	f.mu.Lock()
	srv, done := f.srv, f.done
	f.srv = nil
	f.mu.Unlock()
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

// ServeHTTP forwards one request.
func (f *Front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	status := http.StatusOK
	defer func() {
		f.m.forwarded.WithLabelValues(strconv.Itoa(status)).Inc()
		f.m.seconds.Observe(time.Since(start).Seconds())
	}()
	fail := func(e *imapi.Error) {
		status = HTTPStatus(e.Code)
		writeError(w, e)
	}
	appkey := r.Header.Get(sign.HeaderAppKey)
	if !sign.ValidToken(appkey, 64) {
		fail(imapi.Errorf(imapi.ErrUnauthorized, "missing or malformed %s", sign.HeaderAppKey))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, f.cfg.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			fail(imapi.Errorf(imapi.ErrTooLarge, "body exceeds %d bytes", f.cfg.MaxBodyBytes))
		} else {
			fail(imapi.Errorf(imapi.ErrBadRequest, "read body: %v", err))
		}
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), f.cfg.ForwardTimeout.D())
	defer cancel()
	rt := f.deps.Routes.ForApp(appkey)
	f.deps.Routes.Sent(rt)
	m, err := f.deps.NATS.RequestMsgWithContext(ctx, encodeForward(rt.APISubject(), r.Method, r.RequestURI, r.Header, body))
	if errors.Is(err, nats.ErrNoResponders) && rt.Version != "" {
		f.deps.Routes.Fallback(rt)
		rt = rt.Stable()
		m, err = f.deps.NATS.RequestMsgWithContext(ctx, encodeForward(rt.APISubject(), r.Method, r.RequestURI, r.Header, body))
	}
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		f.deps.Routes.NoResponders(rt.Cluster)
		fail(imapi.Errorf(imapi.ErrUnavailable, "%s", route.NoLiveNode(rt.Cluster)))
		return
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout):
		fail(imapi.Errorf(imapi.ErrTimeout, "the service node did not answer in %s", f.cfg.ForwardTimeout.D()))
		return
	case err != nil:
		f.log.Warn("forward failed", "err", err)
		fail(imapi.Errorf(imapi.ErrUnavailable, "bus: %v", err))
		return
	}
	code, h, out, err := decodeReply(m)
	if err != nil {
		fail(imapi.Errorf(imapi.ErrInternal, "malformed answer from the service node"))
		return
	}
	for k, v := range h {
		w.Header()[k] = v
	}
	status = code
	w.WriteHeader(code)
	_, _ = w.Write(out)
}
