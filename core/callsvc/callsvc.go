// Package callsvc is the IM core's call service. On the bus it answers
// imapi.OpTurnCredentials (time-limited TURN credentials and the TURN sites
// nearest to the client) and imapi.OpCallSignal (1:1 call signalling:
// invite, ringing, accept, reject, hang-up, ICE candidates), which it
// pushes to the other party's sessions as imapi.OpCallEvent. It also issues
// credentials for the server HTTP API (IssueForApp).
//
// It is stateless: any number of nodes share the work through the service
// queue group, like the other app services.
package callsvc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/longlink/longlink/core/imapi"

	"github.com/longlink/longlink/core/internal/buswire"
	"github.com/longlink/longlink/core/route"
	"github.com/longlink/longlink/pkg/logging"
	"github.com/longlink/longlink/pkg/turncred"
)

// Deps are the service's injected dependencies.
type Deps struct {
	NATS       *nats.Conn
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Locator picks the nearest TURN sites; nil uses Config.Servers.
	Locator Locator
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Service is one call service node.
type Service struct {
	cfg     Config
	nc      *nats.Conn
	log     *slog.Logger
	m       *metrics
	keyring *turncred.Keyring
	locator Locator
	now     func() time.Time
	limits  *limiterBook

	mu   sync.Mutex
	subs []*nats.Subscription
	stop chan struct{}
	wg   sync.WaitGroup
}

// New validates cfg and builds a node; Start subscribes it.
func New(cfg Config, deps Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("callsvc: config: %w", err)
	}
	if deps.NATS == nil {
		return nil, errors.New("callsvc: NATS is required")
	}
	deps.Logger = logging.OrDiscard(deps.Logger)
	if deps.Registerer == nil {
		deps.Registerer = prometheus.NewRegistry()
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.Locator == nil {
		deps.Locator = newStaticLocator(cfg.Servers)
	}
	m, err := newMetrics(deps.Registerer)
	if err != nil {
		return nil, fmt.Errorf("callsvc: %w", err)
	}
	kr, err := turncred.NewKeyring(cfg.Secrets)
	if err != nil {
		return nil, fmt.Errorf("callsvc: %w", err)
	}
	return &Service{
		cfg: cfg, nc: deps.NATS, log: deps.Logger.With("component", "callsvc"), m: m,
		keyring: kr, locator: deps.Locator, now: deps.Now,
		limits: newLimiterBook(rate.Limit(cfg.SignalsPerSecond), cfg.SignalBurst),
		stop:   make(chan struct{}),
	}, nil
}

// SetSecrets replaces the TURN secrets (rotation pushed by the LBS); the
// first signs from now on.
func (s *Service) SetSecrets(secrets []turncred.Secret) error {
	if err := s.keyring.Set(secrets); err != nil {
		return fmt.Errorf("callsvc: %w", err)
	}
	s.log.Info("turn secrets replaced", "ids", s.keyring.IDs())
	return nil
}

// Start subscribes to the call ops.
func (s *Service) Start(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for op, h := range map[imapi.Op]func(*buswire.Session, []byte) (any, error){
		imapi.OpTurnCredentials: s.turnCredentials,
		imapi.OpCallSignal:      s.signal,
	} {
		// The call service has no version of its own: it also serves the
		// users a grayscale rule sends to any version (core/route).
		for _, subj := range []string{buswire.ServiceSubject(s.cfg.Cluster, op), route.AnyVersionSubject(s.cfg.Cluster, op)} {
			sub, err := s.nc.QueueSubscribe(subj, buswire.ServiceQueue, func(msg *nats.Msg) { s.dispatch(msg, op, h) })
			if err != nil {
				for _, o := range s.subs {
					_ = o.Unsubscribe()
				}
				s.subs = nil
				return fmt.Errorf("callsvc: subscribe %s: %w", subj, err)
			}
			s.subs = append(s.subs, sub)
		}
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(time.Minute)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case now := <-t.C:
				s.limits.sweep(now)
			}
		}
	}()
	s.log.Info("serving", "cluster", s.cfg.Cluster, "sites", len(s.cfg.Servers), "secrets", s.keyring.IDs())
	return nil
}

// Shutdown drains the subscriptions (requests in flight are answered) and
// stops.
func (s *Service) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	subs := s.subs
	s.subs = nil
	s.mu.Unlock()
	if subs == nil {
		return nil
	}
	for _, sub := range subs {
		_ = sub.Drain()
	}
	close(s.stop)
	s.wg.Wait()
	for _, sub := range subs {
		for sub.IsValid() {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	return nil
}

func (s *Service) dispatch(msg *nats.Msg, op imapi.Op, h func(*buswire.Session, []byte) (any, error)) {
	var req buswire.Request
	var out any
	var err error
	if jerr := json.Unmarshal(msg.Data, &req); jerr != nil {
		err = imapi.Errorf(imapi.ErrBadRequest, "bad envelope")
	} else if req.Session.AppKey == "" || req.Session.Account == "" {
		s.m.refusals.WithLabelValues("not_logged_in").Inc()
		err = imapi.Errorf(imapi.ErrNotLoggedIn, "")
	} else {
		out, err = h(&req.Session, req.Body)
	}
	reply := buswire.Reply{}
	if err != nil {
		var ie *imapi.Error
		if !errors.As(err, &ie) {
			s.log.Error("request failed", "op", op.Name(), "err", err)
			ie = imapi.Errorf(imapi.ErrInternal, "")
		}
		reply.Code, reply.Message = ie.Code, ie.Message
	} else if out != nil {
		b, merr := json.Marshal(out)
		if merr != nil {
			reply.Code = imapi.ErrInternal
		} else {
			reply.Body = b
		}
	}
	s.m.requests.WithLabelValues(op.Name(), strconv.Itoa(int(reply.Code))).Inc()
	if msg.Reply == "" {
		return
	}
	b, _ := json.Marshal(&reply)
	if err := msg.Respond(b); err != nil {
		s.log.Warn("reply failed", "op", op.Name(), "err", err)
	}
}

func (s *Service) turnCredentials(sess *buswire.Session, body []byte) (any, error) {
	var req imapi.TurnCredentialsReq
	if len(body) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			s.m.refusals.WithLabelValues("bad_request").Inc()
			return nil, imapi.Errorf(imapi.ErrBadRequest, "bad body")
		}
	}
	return s.Credentials(context.Background(), sess.AppKey, sess.Account, sess.ClientIP, time.Duration(req.TTLSec)*time.Second)
}

// Credentials issues credentials for appkey/account valid for ttl (0: the
// default; capped at MaxCredentialTTL), with the sites nearest clientIP.
func (s *Service) Credentials(ctx context.Context, appkey, account, clientIP string, ttl time.Duration) (imapi.TurnCredentials, error) {
	if ttl <= 0 {
		ttl = s.cfg.CredentialTTL.D()
	}
	ttl = min(ttl, s.cfg.MaxCredentialTTL.D())
	ttl = max(ttl, time.Minute)
	c, err := s.keyring.Issue(appkey, account, ttl, s.now())
	if err != nil {
		s.m.refusals.WithLabelValues("bad_request").Inc()
		return imapi.TurnCredentials{}, imapi.Errorf(imapi.ErrBadRequest, "cannot issue for this account")
	}
	s.m.issued.Inc()
	return imapi.TurnCredentials{
		Username: c.Username,
		Password: c.Password,
		Expires:  c.Expires.Unix(),
		TTLSec:   int((c.Expires.Sub(s.now()) + time.Second - 1) / time.Second),
		Servers:  s.locator.Nearest(ctx, appkey, clientIP, s.cfg.MaxServers),
	}, nil
}

// IssueRequest is the body of the server API's credential endpoint.
type IssueRequest struct {
	Account  string `json:"account"`
	TTLSec   int    `json:"ttl_sec,omitempty"`
	ClientIP string `json:"client_ip,omitempty"` // the end user's address, for the nearest sites
}

// IssueForApp answers the server HTTP API's credential endpoint for an
// authenticated app: the composition root mounts it as
//
//	api.Handle("POST", "/v1/turn/credentials", func(ctx context.Context, r *serverapi.Request) (any, error) {
//		return calls.IssueForApp(ctx, r.App.AppKey, r.Body)
//	})
func (s *Service) IssueForApp(ctx context.Context, appkey string, body []byte) (any, error) {
	var req IssueRequest
	if err := json.Unmarshal(body, &req); err != nil || !validAccount(req.Account) {
		s.m.refusals.WithLabelValues("bad_request").Inc()
		s.m.requests.WithLabelValues("http.turn", strconv.Itoa(int(imapi.ErrBadRequest))).Inc()
		return nil, imapi.Errorf(imapi.ErrBadRequest, "want {\"account\": …, \"ttl_sec\": …, \"client_ip\": …}")
	}
	c, err := s.Credentials(ctx, appkey, req.Account, req.ClientIP, time.Duration(req.TTLSec)*time.Second)
	code := imapi.OK
	var ie *imapi.Error
	if errors.As(err, &ie) {
		code = ie.Code
	}
	s.m.requests.WithLabelValues("http.turn", strconv.Itoa(int(code))).Inc()
	if err != nil {
		return nil, err
	}
	return c, nil
}

var signalKinds = map[string]bool{
	imapi.CallInvite: true, imapi.CallRinging: true, imapi.CallAccept: true,
	imapi.CallReject: true, imapi.CallHangup: true, imapi.CallCandidate: true,
}

// answerKinds end the ringing on the sender's other devices too.
var answerKinds = map[string]bool{imapi.CallAccept: true, imapi.CallReject: true, imapi.CallHangup: true}

func (s *Service) signal(sess *buswire.Session, body []byte) (any, error) {
	sig, reason, err := parseSignal(body, sess.Account, s.cfg.MaxPayloadBytes)
	if err != nil {
		s.m.refusals.WithLabelValues(reason).Inc()
		return nil, err
	}
	now := s.now()
	if !s.limits.allow(sess.AppKey+":"+sess.Account, now) {
		s.m.refusals.WithLabelValues("rate_limited").Inc()
		return nil, imapi.Errorf(imapi.ErrRateLimited, "too many call signals")
	}
	ev := imapi.CallEvent{
		CallID: sig.CallID, Kind: sig.Kind, From: sess.Account, FromDevice: sess.DeviceID,
		To: sig.To, Media: sig.Media, Payload: sig.Payload, Time: now.UnixMilli(),
	}
	evb, err := json.Marshal(&ev)
	if err != nil {
		return nil, err
	}
	if err := s.push(sess.AppKey, sig.To, evb, ""); err != nil {
		return nil, imapi.Errorf(imapi.ErrUnavailable, "bus")
	}
	if answerKinds[sig.Kind] {
		// The sender's other devices stop ringing or leave the call.
		_ = s.push(sess.AppKey, sess.Account, evb, sess.SessionID)
	}
	s.m.signals.WithLabelValues(sig.Kind).Inc()
	return imapi.CallSignalAck{Time: now.UnixMilli()}, nil
}

// parseSignal decodes and checks a signal from account; on refusal it
// returns the metrics reason and an *imapi.Error.
func parseSignal(body []byte, account string, maxPayload int) (imapi.CallSignal, string, error) {
	var sig imapi.CallSignal
	if len(body) > maxPayload+1024 {
		return sig, "too_large", imapi.Errorf(imapi.ErrTooLarge, "signal over %d bytes", maxPayload)
	}
	if err := json.Unmarshal(body, &sig); err != nil {
		return sig, "bad_request", imapi.Errorf(imapi.ErrBadRequest, "bad body")
	}
	switch {
	case !validToken(sig.CallID, 64):
		return sig, "bad_request", imapi.Errorf(imapi.ErrBadRequest, "call_id: 1-64 characters of A-Z a-z 0-9 _ -")
	case !validAccount(sig.To) || sig.To == account:
		return sig, "bad_request", imapi.Errorf(imapi.ErrBadRequest, "to: another account")
	case !signalKinds[sig.Kind]:
		return sig, "bad_request", imapi.Errorf(imapi.ErrBadRequest, "kind: one of invite, ringing, accept, reject, hangup, candidate")
	case sig.Media != "" && sig.Media != "audio" && sig.Media != "video":
		return sig, "bad_request", imapi.Errorf(imapi.ErrBadRequest, "media: audio or video")
	case len(sig.Payload) > maxPayload:
		return sig, "too_large", imapi.Errorf(imapi.ErrTooLarge, "payload over %d bytes", maxPayload)
	}
	return sig, "", nil
}

func (s *Service) push(appkey, account string, body []byte, except string) error {
	b, _ := json.Marshal(&buswire.Push{Op: imapi.OpCallEvent, Body: body, ExceptSession: except})
	if err := s.nc.Publish(buswire.UserSubject(appkey, account), b); err != nil {
		s.m.pushFails.Inc()
		s.log.Warn("call event push failed", "err", err)
		return err
	}
	return nil
}

func validToken(v string, maxLen int) bool {
	if len(v) == 0 || len(v) > maxLen {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// validAccount accepts what can be a NATS subject token and a TURN username
// part: printable, no spaces, dots, wildcards or colons.
func validAccount(v string) bool {
	if len(v) == 0 || len(v) > 128 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c <= ' ' || c >= 0x7f || c == '.' || c == '*' || c == '>' || c == ':' {
			return false
		}
	}
	return true
}

// limiterBook holds a token bucket per account, dropping idle ones.
type limiterBook struct {
	mu    sync.Mutex
	r     rate.Limit
	burst int
	m     map[string]*limiterEntry
}

type limiterEntry struct {
	l    *rate.Limiter
	last time.Time
}

func newLimiterBook(r rate.Limit, burst int) *limiterBook {
	return &limiterBook{r: r, burst: burst, m: map[string]*limiterEntry{}}
}

func (b *limiterBook) allow(key string, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.m[key]
	if e == nil {
		e = &limiterEntry{l: rate.NewLimiter(b.r, b.burst)}
		b.m[key] = e
	}
	e.last = now
	return e.l.AllowN(now, 1)
}

// sweep forgets accounts idle long enough for their bucket to be full again.
func (b *limiterBook) sweep(now time.Time) {
	idle := time.Duration(float64(b.burst)/float64(b.r)*float64(time.Second)) + time.Minute
	b.mu.Lock()
	defer b.mu.Unlock()
	for k, e := range b.m {
		if now.Sub(e.last) > idle {
			delete(b.m, k)
		}
	}
}
