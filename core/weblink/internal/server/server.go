// Package server is WebLink's Engine.IO v4 + Socket.IO v5 server: HTTP
// long-polling and WebSocket transports, upgrade, heartbeat, namespaces,
// acknowledgements and binary attachments, behaving as the reference
// JavaScript server (socket.io v4 on engine.io v6) does on the wire. What the
// events mean is up to a Handler.
package server

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/longlink/longlink/core/weblink/internal/eio"
	"github.com/longlink/longlink/pkg/logging"
)

// Engine.IO error codes and their messages, as the reference server sends them.
const (
	ErrUnknownTransport = 0
	ErrUnknownSID       = 1
	ErrBadHandshake     = 2
	ErrBadRequest       = 3
	ErrForbidden        = 4
	ErrUnsupportedEIO   = 5
)

var errorMessages = [...]string{
	"Transport unknown", "Session ID unknown", "Bad handshake method",
	"Bad request", "Forbidden", "Unsupported protocol version",
}

// Config of the protocol server. Zero values take the reference defaults.
type Config struct {
	Path           string        // request path prefix; default "/socket.io/"
	PingInterval   time.Duration // default 25s
	PingTimeout    time.Duration // default 20s
	UpgradeTimeout time.Duration // default 10s: a probe that does not finish is closed
	ConnectTimeout time.Duration // default 45s: a session that joins no namespace is closed
	CloseTimeout   time.Duration // default 30s: how long a forced close waits for the next poll
	WriteTimeout   time.Duration // default 10s: a client that does not read for this long is dropped
	MaxPayload     int           // maxHttpBufferSize; default 1,000,000 bytes
	MaxOutbound    int           // bytes queued for one client before it is dropped; default 4 MiB
	MaxSessions    int           // 0: unlimited
	MaxPerIP       int           // sessions from one client address; 0: unlimited
	// ParkAfter is how long a quiet WebSocket connection keeps its reading
	// goroutine before it is parked (Linux). Default 50ms.
	ParkAfter time.Duration
	// AllowedOrigins lists the Origin values allowed to talk to the server
	// ("*" allows any). A request without Origin, or from the same host, is
	// always allowed. Others are refused with Engine.IO error 4 (Forbidden),
	// on polling and on WebSocket upgrades alike.
	AllowedOrigins []string
	// Namespaces served besides "/"; a CONNECT to any other gets
	// CONNECT_ERROR "Invalid namespace".
	Namespaces []string

	// engineEcho serves Engine.IO alone and sends every message back
	// (EngineIOEchoConfig).
	engineEcho bool
}

func (c *Config) setDefaults() {
	if c.Path == "" {
		c.Path = "/socket.io/"
	}
	if !strings.HasSuffix(c.Path, "/") {
		c.Path += "/"
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.PingInterval, 25*time.Second)
	def(&c.PingTimeout, 20*time.Second)
	def(&c.UpgradeTimeout, 10*time.Second)
	def(&c.ConnectTimeout, 45*time.Second)
	def(&c.CloseTimeout, 30*time.Second)
	def(&c.WriteTimeout, 10*time.Second)
	def(&c.ParkAfter, 50*time.Millisecond)
	if c.MaxPayload <= 0 {
		c.MaxPayload = 1_000_000
	}
	if c.MaxOutbound <= 0 {
		c.MaxOutbound = 4 << 20
	}
}

// Server serves Engine.IO/Socket.IO requests under Config.Path.
type Server struct {
	cfg     Config
	h       Handler
	log     *slog.Logger
	m       *Metrics
	nsps    map[string]bool
	origins map[string]bool
	anyOrig bool

	mu       sync.Mutex
	sessions map[string]*session
	perIP    map[string]int32
	closed   bool
	conns    sync.WaitGroup // WebSocket connections until their end
	parker   *parker        // nil: every connection keeps its reader
	stopOnce sync.Once
}

// New returns a server; m may be nil.
func New(cfg Config, h Handler, log *slog.Logger, m *Metrics) *Server {
	cfg.setDefaults()
	log = logging.OrDiscard(log)
	if m == nil {
		m = NewMetrics(nil)
	}
	s := &Server{cfg: cfg, h: h, log: log, m: m, nsps: map[string]bool{"/": true},
		origins: map[string]bool{}, sessions: map[string]*session{}, perIP: map[string]int32{}}
	for _, n := range cfg.Namespaces {
		s.nsps[n] = true
	}
	if p, err := newParker(m.parked); err == nil {
		s.parker = p
	} else {
		log.Info("idle connections keep their reader goroutine", "err", err)
	}
	for _, o := range cfg.AllowedOrigins {
		if o == "*" {
			s.anyOrig = true
		}
		s.origins[strings.TrimSuffix(o, "/")] = true
	}
	return s
}

// Config returns the effective configuration.
func (s *Server) Config() Config { return s.cfg }

// Sessions is the number of open Engine.IO sessions.
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// Close closes every session (reason "server shutting down") and refuses new
// ones, then waits for the WebSocket read loops to end.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	all := make([]*session, 0, len(s.sessions))
	for _, ss := range s.sessions {
		all = append(all, ss)
	}
	s.mu.Unlock()
	for _, ss := range all {
		ss.close("server shutting down", closeByServer)
	}
	s.conns.Wait()
	s.stopOnce.Do(func() {
		if s.parker != nil {
			s.parker.close()
		}
	})
}

// ServeHTTP implements http.Handler for requests under Config.Path.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.URL.Path, s.cfg.Path) {
		http.NotFound(w, r)
		return
	}
	originOK := s.originAllowed(r)
	if originOK {
		s.setCORS(w, r)
	}
	if r.Method == http.MethodOptions && len(s.origins) > 0 {
		// With CORS configured, the reference's cors middleware ends every
		// OPTIONS request as a preflight; without it OPTIONS is a bad method.
		w.WriteHeader(http.StatusNoContent)
		return
	}
	q := r.URL.Query()
	transport := q.Get("transport")
	upgrade := isUpgrade(r)
	fail := func(code int) {
		s.m.requestErrors.WithLabelValues(strconv.Itoa(code)).Inc()
		if upgrade {
			abortUpgrade(w, code)
		} else {
			abortRequest(w, code)
		}
	}
	if transport != "polling" && transport != "websocket" {
		fail(ErrUnknownTransport)
		return
	}
	if !validHeaderValue(r.Header.Get("Origin")) {
		fail(ErrBadRequest)
		return
	}
	if sid := q.Get("sid"); sid != "" {
		s.mu.Lock()
		ss := s.sessions[sid]
		s.mu.Unlock()
		if ss == nil {
			fail(ErrUnknownSID)
			return
		}
		if !originOK {
			fail(ErrForbidden)
			return
		}
		if !upgrade && ss.transportName() != transport {
			fail(ErrBadRequest)
			return
		}
		if upgrade {
			s.serveProbe(w, r, ss, transport)
			return
		}
		ss.servePolling(w, r)
		return
	}
	if r.Method != http.MethodGet {
		fail(ErrBadHandshake)
		return
	}
	if transport == "websocket" && !upgrade {
		fail(ErrBadRequest)
		return
	}
	if !originOK {
		fail(ErrForbidden)
		return
	}
	if q.Get("EIO") != "4" {
		fail(ErrUnsupportedEIO)
		return
	}
	if transport == "polling" && upgrade {
		// The reference completes the WebSocket handshake and closes it: the
		// polling transport does not handle upgraded requests.
		s.serveRejectedWebSocket(w, r)
		return
	}
	if transport == "websocket" {
		s.serveWebSocketHandshake(w, r)
		return
	}
	s.servePollingHandshake(w, r)
}

func isUpgrade(r *http.Request) bool {
	return r.Method == http.MethodGet && strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

// abortRequest answers a bad HTTP request as the reference does: 403 for
// Forbidden, 400 otherwise, with {"code":N,"message":"..."}.
func abortRequest(w http.ResponseWriter, code int) {
	status := http.StatusBadRequest
	if code == ErrForbidden {
		status = http.StatusForbidden
	}
	body, _ := json.Marshal(struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}{code, errorMessages[code]})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// abortUpgrade answers a refused WebSocket upgrade as the reference does:
// always 400, the message as text/html, and the connection closed.
func abortUpgrade(w http.ResponseWriter, code int) {
	msg := errorMessages[code]
	w.Header().Set("Connection", "close")
	w.Header().Set("Content-Type", "text/html")
	w.Header().Set("Content-Length", strconv.Itoa(len(msg)))
	w.WriteHeader(http.StatusBadRequest)
	_, _ = w.Write([]byte(msg))
}

// validHeaderValue mirrors Node's checkInvalidHeaderChar on the Origin header.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

func (s *Server) originAllowed(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" || s.anyOrig || s.origins[o] {
		return true
	}
	// Same origin: the page was served by this host.
	if i := strings.Index(o, "://"); i >= 0 && strings.EqualFold(o[i+3:], r.Host) {
		return true
	}
	return false
}

func (s *Server) setCORS(w http.ResponseWriter, r *http.Request) {
	o := r.Header.Get("Origin")
	if o == "" || len(s.origins) == 0 {
		return
	}
	h := w.Header()
	if s.anyOrig {
		// Like the cors package with origin "*": no credentials.
		h.Set("Access-Control-Allow-Origin", "*")
	} else {
		h.Set("Access-Control-Allow-Origin", o)
		h.Add("Vary", "Origin")
		h.Set("Access-Control-Allow-Credentials", "true")
	}
	if r.Method == http.MethodOptions {
		h.Set("Access-Control-Allow-Methods", "GET,HEAD,PUT,PATCH,POST,DELETE")
		if rh := r.Header.Get("Access-Control-Request-Headers"); rh != "" {
			h.Set("Access-Control-Allow-Headers", rh)
			h.Add("Vary", "Access-Control-Request-Headers")
		}
	}
}

// newID returns a 20-character id like the reference's base64id.
func newID() string {
	var b [15]byte
	_, _ = rand.Read(b[:])
	return base64.URLEncoding.EncodeToString(b[:])
}

// openPacket is the handshake packet of a new session.
func (s *Server) openPacket(sid string, upgrades bool) eio.Packet {
	ups := "[]"
	if upgrades {
		ups = `["websocket"]`
	}
	data := `{"sid":"` + sid + `","upgrades":` + ups +
		`,"pingInterval":` + strconv.FormatInt(s.cfg.PingInterval.Milliseconds(), 10) +
		`,"pingTimeout":` + strconv.FormatInt(s.cfg.PingTimeout.Milliseconds(), 10) +
		`,"maxPayload":` + strconv.Itoa(s.cfg.MaxPayload) + `}`
	return eio.Packet{Type: eio.Open, Data: []byte(data)}
}

// register adds a new session; false when the server is closed or full.
func (s *Server) register(ss *session) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if s.cfg.MaxSessions > 0 && len(s.sessions) >= s.cfg.MaxSessions {
		s.m.refused.WithLabelValues("max_sessions").Inc()
		return false
	}
	if s.cfg.MaxPerIP > 0 && int(s.perIP[ss.remote]) >= s.cfg.MaxPerIP {
		s.m.refused.WithLabelValues("per_ip").Inc()
		return false
	}
	s.sessions[ss.sid] = ss
	s.perIP[ss.remote]++
	s.m.sessions.Inc()
	return true
}

func (s *Server) unregister(ss *session) {
	s.mu.Lock()
	if s.sessions[ss.sid] == ss {
		delete(s.sessions, ss.sid)
		if s.perIP[ss.remote]--; s.perIP[ss.remote] <= 0 {
			delete(s.perIP, ss.remote)
		}
		s.m.sessions.Dec()
	}
	s.mu.Unlock()
}

// clientIP is the remote address without the port.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// Drain refuses new sessions and closes the open ones in (up to) ten batches
// spread over spread, so that clients reconnect elsewhere gradually; when ctx ends
// first, the rest are closed at once.
func (s *Server) Drain(ctx context.Context, spread time.Duration) {
	s.mu.Lock()
	s.closed = true
	all := make([]*session, 0, len(s.sessions))
	for _, ss := range s.sessions {
		all = append(all, ss)
	}
	s.mu.Unlock()
	if len(all) == 0 {
		return
	}
	batches := min(10, len(all))
	per := (len(all) + batches - 1) / batches
	for i := 0; i < len(all); i += per {
		for _, ss := range all[i:min(i+per, len(all))] {
			ss.close("server shutting down", closeGracefully)
		}
		if i+per >= len(all) {
			return
		}
		select {
		case <-time.After(spread / time.Duration(batches)):
		case <-ctx.Done():
			for _, ss := range all[i+per:] {
				ss.close("server shutting down", closeGracefully)
			}
			return
		}
	}
}
