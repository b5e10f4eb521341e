package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/time/rate"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/pkg/jsonenc"

	"github.com/longlink/longlink/core/internal/buswire"
	"github.com/longlink/longlink/core/route"
)

// Transport is one client connection as the session hub sees it: Link TCP
// here, Socket.IO in core/weblink. The gateway calls it from its own
// goroutines; neither method may block or call back into the gateway.
type Transport interface {
	// Push queues a server push for the client. It returns false when the
	// client's send queue is full: the gateway then drops the session as a
	// slow consumer (Close is not called; the transport closes itself).
	// Push may be called before Login returns; a transport must hold pushes
	// until it has sent the login answer.
	Push(op imapi.Op, body []byte) bool
	// Close tells the client why it is being closed (a kick push carrying
	// k) and closes the connection once that is sent.
	Close(k imapi.Kick)
}

// Reasons carried in kicks sent by the gateway itself.
const (
	ReasonDraining = "server draining"
	ReasonSlow     = "slow consumer"
)

// Reasons of closes that are not kicks, as told to Presence.
const (
	closeLogout     = "logout"
	closeDisconnect = "disconnected"
	closeShutdown   = "gateway stopped"
)

// Session is a logged-in client on any transport.
type Session struct {
	g       *Gateway
	info    buswire.Session
	t       Transport
	subject string
	// route is where the session's requests go, cached under the route
	// table's generation (grayscale rules change it).
	routed atomic.Pointer[sessionRoute]

	// Made on the first request: an idle session never needs it.
	req atomic.Pointer[requestState]

	supers map[string]struct{} // subjects of its super-groups; guarded by g.mu

	inflight atomic.Int32
	closed   atomic.Bool

	// extra is made on the session's first send or chatroom (extras): an
	// idle session, or one that only syncs, never needs it, and its
	// Session is a size class smaller.
	extra atomic.Pointer[sessionExtra]
}

// sessionExtra is what a session holds once it sends or enters a room.
type sessionExtra struct {
	// sends keeps the session's sends in order (sendq.go, ORDER.md).
	sends sendLane

	rooms []*gwRoom // guarded by Gateway.roomMu
}

// extras returns the session's sessionExtra, making it on first use.
func (s *Session) extras() *sessionExtra {
	if x := s.extra.Load(); x != nil {
		return x
	}
	s.extra.CompareAndSwap(nil, new(sessionExtra))
	return s.extra.Load()
}

// Info is the session as the services see it.
func (s *Session) Info() buswire.Session { return s.info }

// ID is the session id assigned by the login service.
func (s *Session) ID() string { return s.info.SessionID }

// Closed reports whether the session has ended.
func (s *Session) Closed() bool { return s.closed.Load() }

// Reply is the answer to a request.
type Reply struct {
	Code imapi.Code
	Body []byte // the response body, or {"code":…,"message":…} when Code != 0
	// noResponders: NATS found no subscriber for the request's subject.
	noResponders bool
}

// errorBody is the body of an error reply.
func errorBody(code imapi.Code, msg string) []byte {
	b, _ := json.Marshal(imapi.Error{Code: code, Message: msg})
	return b
}

// refusalBody is an error's body with its retry-after hint, if any.
func refusalBody(ie *imapi.Error) []byte {
	b, _ := json.Marshal(imapi.Error{Code: ie.Code, Message: ie.Message, RetryAfterMs: ie.RetryAfterMs})
	return b
}

func errReply(code imapi.Code, msg string) Reply {
	return Reply{Code: code, Body: errorBody(code, msg)}
}

// Login authenticates a client through the login service and registers the
// session for pushes. body is the client's imapi.LoginReq. It returns the
// session and the body of the login answer (an imapi.LoginResp whose
// heartbeat_sec is the gateway's). A failed login returns an *imapi.Error.
// A session_id in body is dropped: only an edge may choose it (loginFrom).
func (g *Gateway) Login(ctx context.Context, t Transport, clientIP string, body []byte) (*Session, []byte, error) {
	return g.loginFrom(ctx, t, clientIP, body, false)
}

// loginFrom is Login; fromEdge says that the connection came through the
// pre-terminated listener from a trusted proxy, whose edge may already have
// answered the client with the session id in the request (LINK.md section 7).
func (g *Gateway) loginFrom(ctx context.Context, t Transport, clientIP string, body []byte, fromEdge bool) (*Session, []byte, error) {
	if g.draining.Load() {
		g.m.refused.WithLabelValues("draining").Inc()
		return nil, nil, imapi.Errorf(imapi.ErrUnavailable, ReasonDraining)
	}
	if g.opDrained.Load() {
		return nil, nil, g.refuseDrained()
	}
	var req imapi.LoginReq
	if err := json.Unmarshal(body, &req); err != nil {
		g.m.logins.WithLabelValues(imapi.ErrBadRequest.String()).Inc()
		return nil, nil, imapi.Errorf(imapi.ErrBadRequest, "login body: %v", err)
	}
	if !subjectSafe(req.AppKey) || !accountSafe(req.Account) {
		g.m.logins.WithLabelValues(imapi.ErrUnauthorized.String()).Inc()
		return nil, nil, imapi.Errorf(imapi.ErrUnauthorized, "invalid appkey or account")
	}
	if req.DeviceType == "" {
		req.DeviceType = "unknown" // as the login service records it
	}
	if !fromEdge {
		// A client cannot choose its session id (it names the session in
		// kicks and the event log): every spelling of the key goes.
		var err error
		if body, err = imapi.SetLoginSessionID(body, ""); err != nil {
			g.m.logins.WithLabelValues(imapi.ErrBadRequest.String()).Inc()
			return nil, nil, imapi.Errorf(imapi.ErrBadRequest, "login body: %v", err)
		}
		req.SessionID = ""
	}
	// Subscribe to the account's subject before asking the login service,
	// so that a super-group join committed after the service listed the
	// account's groups is heard (and applied by register), not lost.
	subject := buswire.UserSubject(req.AppKey, req.Account)
	pl, err := g.reserve(subject)
	if err != nil {
		g.m.logins.WithLabelValues(imapi.ErrUnavailable.String()).Inc()
		return nil, nil, imapi.Errorf(imapi.ErrUnavailable, "subscribe: %v", err)
	}
	registered := false
	defer func() {
		if !registered {
			g.unreserve(subject, pl)
		}
	}()
	rt := g.routes.ForUser(req.AppKey, req.Account, req.SDKVersion)
	gen := g.routes.Generation()
	env, err := json.Marshal(buswire.Request{
		Session: buswire.Session{Gateway: g.cfg.ID, ClientIP: clientIP},
		Body:    body,
	})
	if err != nil {
		return nil, nil, imapi.Errorf(imapi.ErrBadRequest, "login body: %v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, g.cfg.LoginTimeout.D())
	defer cancel()
	g.routes.Sent(rt)
	msg, err := g.nc.RequestWithContext(ctx, rt.Subject(imapi.OpLogin), env)
	if errors.Is(err, nats.ErrNoResponders) && rt.Version != "" {
		g.routes.Fallback(rt)
		msg, err = g.nc.RequestWithContext(ctx, rt.Stable().Subject(imapi.OpLogin), env)
	}
	if err != nil {
		code, what := imapi.ErrUnavailable, "login service: "+err.Error()
		switch {
		case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout):
			code = imapi.ErrTimeout
		case errors.Is(err, nats.ErrNoResponders):
			g.routes.NoResponders(rt.Cluster)
			what = route.NoLiveNode(rt.Cluster)
		}
		g.m.logins.WithLabelValues(code.String()).Inc()
		return nil, nil, imapi.Errorf(code, "%s", what)
	}
	var rep buswire.Reply
	if err := json.Unmarshal(msg.Data, &rep); err != nil {
		g.m.logins.WithLabelValues(imapi.ErrInternal.String()).Inc()
		return nil, nil, imapi.Errorf(imapi.ErrInternal, "login reply: %v", err)
	}
	if rep.Code != imapi.OK {
		g.m.logins.WithLabelValues(rep.Code.String()).Inc()
		ie := &imapi.Error{Code: rep.Code, Message: rep.Message}
		var hint imapi.Error // a refusal under load says when to come back
		if len(rep.Body) > 0 && json.Unmarshal(rep.Body, &hint) == nil {
			ie.RetryAfterMs = hint.RetryAfterMs
		}
		return nil, nil, ie
	}
	var lr buswire.LoginReply
	if err := json.Unmarshal(rep.Body, &lr); err != nil || lr.SessionID == "" || (req.SessionID != "" && lr.SessionID != req.SessionID) {
		g.m.logins.WithLabelValues(imapi.ErrInternal.String()).Inc()
		return nil, nil, imapi.Errorf(imapi.ErrInternal, "login reply without a session")
	}
	resp := lr.LoginResp // the super-groups are for this gateway only
	resp.HeartbeatSec = int(g.cfg.Heartbeat.D() / time.Second)
	supers := lr.SuperGroups
	out, _ := json.Marshal(resp)

	s := &Session{
		g: g,
		info: buswire.Session{
			AppKey: req.AppKey, Account: req.Account, DeviceID: req.DeviceID, DeviceType: req.DeviceType,
			SessionID: resp.SessionID, Gateway: g.cfg.ID, ClientIP: clientIP, SDK: req.SDKVersion,
		},
		t:       t,
		subject: subject,
	}
	s.routed.Store(g.shared.get(gen, rt))
	if err := g.register(s, supers, pl); err != nil {
		g.m.logins.WithLabelValues(imapi.ErrUnavailable.String()).Inc()
		return nil, nil, imapi.Errorf(imapi.ErrUnavailable, "subscribe: %v", err)
	}
	registered = true
	g.m.logins.WithLabelValues("ok").Inc()
	return s, out, nil
}

func accountSafe(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '@' || c == '+' || c == '=') {
			return false
		}
	}
	return true
}

type sessionRoute struct {
	gen uint64
	r   route.Route
}

// sharedRoutes hands out one *sessionRoute per distinct route of the
// current generation: sessions of an app mostly share a route, and an
// idle session then keeps a pointer, not a copy. A new generation starts
// a new set (the old one goes with its last session).
type sharedRoutes struct {
	mu  sync.Mutex
	gen uint64
	m   map[route.Route]*sessionRoute
}

func (c *sharedRoutes) get(gen uint64, r route.Route) *sessionRoute {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || gen != c.gen {
		c.gen, c.m = gen, make(map[route.Route]*sessionRoute)
	}
	sr := c.m[r]
	if sr == nil {
		sr = &sessionRoute{gen: gen, r: r}
		c.m[r] = sr
	}
	return sr
}

// currentRoute is where the session's requests go now: routed again when the
// grayscale rules changed since it last was, so a rule (or its rollback)
// moves sessions that are already logged in.
func (s *Session) currentRoute() route.Route {
	gen := s.g.routes.Generation()
	if sr := s.routed.Load(); sr.gen == gen {
		return sr.r
	}
	r := s.g.routes.ForUser(s.info.AppKey, s.info.Account, s.info.SDK)
	s.routed.Store(s.g.shared.get(gen, r))
	return r
}

// Request forwards a request and waits for its reply. Heartbeats are
// answered by the gateway. Errors are carried in Reply.Code.
func (s *Session) Request(ctx context.Context, op imapi.Op, body []byte) Reply {
	ch := make(chan Reply, 1)
	s.Go(op, body, func(r Reply) { ch <- r })
	select {
	case r := <-ch:
		return r
	case <-ctx.Done():
		return errReply(imapi.ErrTimeout, ctx.Err().Error())
	}
}

// Go forwards a request without waiting: done is called once with the reply,
// from a gateway goroutine (possibly before Go returns). done must not block.
func (s *Session) Go(op imapi.Op, body []byte, done func(Reply)) {
	g := s.g
	switch op {
	case imapi.OpHeartbeat:
		done(Reply{})
		return
	case imapi.OpLogin:
		done(errReply(imapi.ErrBadRequest, "already logged in"))
		return
	case buswire.OpSendBatch:
		done(errReply(imapi.ErrUnknownOp, "not a client request"))
		return
	}
	if len(body) > 0 && !jsonenc.Valid(body) {
		done(errReply(imapi.ErrBadRequest, "body is not JSON"))
		return
	}
	if op == imapi.OpSend {
		// Sends keep their order in the session's lane, which paces them
		// by the request rate instead of refusing any.
		g.m.requests.WithLabelValues(op.Name()).Inc()
		s.goSend(body, done)
		return
	}
	if s.closed.Load() {
		done(errReply(imapi.ErrNotLoggedIn, "session closed"))
		return
	}
	prefix, limiter := s.requestState()
	if !limiter.Allow() {
		g.m.refused.WithLabelValues("rate").Inc()
		done(errReply(imapi.ErrRateLimited, "request rate"))
		return
	}
	if s.inflight.Add(1) > int32(g.cfg.MaxInflight) {
		s.inflight.Add(-1)
		g.m.refused.WithLabelValues("inflight").Inc()
		done(errReply(imapi.ErrRateLimited, "too many requests in flight"))
		return
	}
	var leaving string // the room subject of a room.leave
	var entering imapi.RoomRef
	switch op {
	case imapi.OpRoomEnter:
		if g.roomCount(s) >= g.cfg.MaxRoomsPerSession {
			s.inflight.Add(-1)
			g.m.refused.WithLabelValues("rooms").Inc()
			done(errReply(imapi.ErrForbidden, "in too many rooms"))
			return
		}
		// The session joins before the request goes out (see roomJoin); a
		// room id the services would refuse is forwarded without it.
		if json.Unmarshal(body, &entering) == nil && subjectSafe(entering.RoomID) {
			if err := g.roomJoin(s, entering.RoomID, buswire.RoomSubject(s.info.AppKey, entering.RoomID)); err != nil {
				s.inflight.Add(-1)
				g.log.Warn("room join", "err", err)
				done(errReply(imapi.ErrUnavailable, "bus: room subscription"))
				return
			}
		} else {
			entering.RoomID = ""
		}
	case imapi.OpRoomLeave:
		var ref imapi.RoomRef
		if json.Unmarshal(body, &ref) == nil && subjectSafe(ref.RoomID) {
			leaving = buswire.RoomSubject(s.info.AppKey, ref.RoomID)
		}
	}
	g.m.requests.WithLabelValues(op.Name()).Inc()
	env := make([]byte, 0, len(prefix)+len(body)+10)
	env = append(env, prefix...)
	if len(body) > 0 {
		env = append(env, `,"body":`...)
		env = append(env, body...)
	}
	env = append(env, '}')
	logout := op == imapi.OpLogout
	s.forward(op, env, func(r Reply) {
		s.inflight.Add(-1)
		if r.Code != imapi.OK {
			g.m.requestErrors.WithLabelValues(strconv.Itoa(int(r.Code))).Inc()
		}
		switch {
		case entering.RoomID != "":
			g.roomEntered(s, entering.RoomID, buswire.RoomSubject(s.info.AppKey, entering.RoomID), r.Code)
		case leaving != "" && r.Code == imapi.OK:
			g.roomLeave(s, leaving)
		}
		if logout && r.Code == imapi.OK {
			// The session ends with its logout; the transport closes the
			// connection after sending the answer.
			g.unregister(s, closeLogout, false)
			g.m.kicks.WithLabelValues("logout").Inc()
		}
		done(r)
	})
}

// forward publishes env, a buswire.Request for op, on the session's route and
// calls done with the answer. A grayscale version with no live node hands
// the request to the stable nodes; a cluster with none answers at once.
func (s *Session) forward(op imapi.Op, env []byte, done func(Reply)) {
	g := s.g
	rt := s.currentRoute()
	g.routes.Sent(rt)
	var answer func(Reply)
	answer = func(r Reply) {
		if r.noResponders {
			if rt.Version != "" {
				// No live node of the rule's version: the stable nodes
				// take it (the request reached nobody, so it is not a
				// duplicate).
				g.routes.Fallback(rt)
				rt = rt.Stable()
				g.replies.send(g, rt.Subject(op), env, answer)
				return
			}
			g.routes.NoResponders(rt.Cluster)
			r = errReply(imapi.ErrUnavailable, route.NoLiveNode(rt.Cluster))
		}
		done(r)
	}
	g.replies.send(g, rt.Subject(op), env, answer)
}

// requestState is what a session's requests need.
type requestState struct {
	prefix  []byte // `{"session":{…}` of every buswire.Request
	limiter *rate.Limiter
}

// requestState returns the encoded session and the rate limiter, making
// them on first use. Two first requests at once may both make them; every
// request uses the one stored first.
func (s *Session) requestState() ([]byte, *rate.Limiter) {
	rs := s.req.Load()
	if rs == nil {
		sj, _ := json.Marshal(s.info)
		prefix := make([]byte, 0, len(sj)+12)
		prefix = append(prefix, `{"session":`...)
		prefix = append(prefix, sj...)
		s.req.CompareAndSwap(nil, &requestState{prefix: prefix,
			limiter: rate.NewLimiter(rate.Limit(s.g.cfg.RequestRate), s.g.cfg.RequestBurst)})
		rs = s.req.Load()
	}
	return rs.prefix, rs.limiter
}

// endSession closes s from the gateway's side with a kick that tells the
// client to reconnect (code unavailable), so that it resends what is not
// acknowledged, in order, on a new session.
func (g *Gateway) endSession(s *Session, reason string) {
	if g.unregister(s, reason, true) {
		g.m.kicks.WithLabelValues("unavailable").Inc()
		s.t.Close(imapi.Kick{Code: imapi.ErrUnavailable, Reason: reason})
	}
}

// Close ends the session when its transport is gone. It is idempotent.
func (s *Session) Close() { s.g.unregister(s, closeDisconnect, false) }

// account is the set of sessions of one account on this gateway, with the
// push subscription they share, and the logins of the account waiting for
// the login service.
type account struct {
	sub      *nats.Subscription
	sessions []*Session
	pending  []*pendingLogin
}

// pendingLogin collects the SuperEvent bodies pushed on the account's
// subject while one login waits for its answer: the answer's super-group
// list may predate them, so register applies them after the list.
type pendingLogin struct {
	events   [][]byte
	overflow bool
}

// maxPendingEvents bounds the events one login buffers; a login that sees
// more is refused (unavailable: the client logs in again).
const maxPendingEvents = 256

// accountLocked returns the account of subject, subscribing its subject
// when it is new (fresh). g.mu is held.
func (g *Gateway) accountLocked(subject string) (a *account, fresh bool, err error) {
	if a = g.accounts[subject]; a != nil {
		return a, false, nil
	}
	sub, err := g.nc.ChanSubscribe(subject, g.pushCh)
	if err != nil {
		return nil, false, err
	}
	_ = sub.SetPendingLimits(-1, -1)
	a = &account{sub: sub}
	g.accounts[subject] = a
	g.m.accounts.Inc()
	return a, true, nil
}

// dropIdleLocked unsubscribes the account's subject when it has neither
// sessions nor pending logins. g.mu is held.
func (g *Gateway) dropIdleLocked(subject string, a *account) {
	if len(a.sessions) > 0 || len(a.pending) > 0 || g.accounts[subject] != a {
		return
	}
	delete(g.accounts, subject)
	_ = a.sub.Unsubscribe()
	g.m.accounts.Dec()
}

func (a *account) unpend(pl *pendingLogin) {
	if i := slices.Index(a.pending, pl); i >= 0 {
		a.pending = slices.Delete(a.pending, i, i+1)
	}
}

// reserve subscribes the account's subject (if this gateway has not yet)
// before a login asks the login service, and makes sure the server has the
// subscription, so no SuperEvent published after the service's answer was
// computed can be missed.
func (g *Gateway) reserve(subject string) (*pendingLogin, error) {
	g.mu.Lock()
	a, fresh, err := g.accountLocked(subject)
	if err != nil {
		g.mu.Unlock()
		return nil, err
	}
	pl := &pendingLogin{}
	a.pending = append(a.pending, pl)
	g.mu.Unlock()
	if fresh {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err = g.nc.FlushWithContext(ctx)
		cancel()
		if err != nil {
			g.unreserve(subject, pl)
			return nil, err
		}
	}
	return pl, nil
}

// unreserve ends a pending login that did not register.
func (g *Gateway) unreserve(subject string, pl *pendingLogin) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if a := g.accounts[subject]; a != nil {
		a.unpend(pl)
		g.dropIdleLocked(subject, a)
	}
}

// register adds a logged-in session: its super-groups are those of the
// login answer, then the SuperEvents heard while the login was pending
// (pl) are applied in order.
func (g *Gateway) register(s *Session, supers []string, pl *pendingLogin) error {
	g.mu.Lock()
	a, fresh, err := g.accountLocked(s.subject)
	if err != nil {
		g.mu.Unlock()
		return err
	}
	a.unpend(pl)
	if pl.overflow {
		g.dropIdleLocked(s.subject, a)
		g.mu.Unlock()
		return errors.New("super-group membership changed too often during the login")
	}
	a.sessions = append(a.sessions, s)
	for _, gid := range supers {
		if g.joinSuperLocked(s, gid) {
			fresh = true
		}
	}
	for _, ev := range pl.events {
		if g.superEventLocked([]*Session{s}, ev) {
			fresh = true
		}
	}
	g.mu.Unlock()
	g.m.sessions.Inc()
	if g.pres != nil {
		g.pres.SessionOpened(s.info)
	}
	if fresh {
		// Make sure the server has the subscription before the client is
		// told it is logged in, so that pushes sent after the login answer
		// are not missed (the client syncs what came before).
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = g.nc.FlushWithContext(ctx)
		cancel()
	}
	return nil
}

// unregister ends a session once; reason and kicked are for Presence.
func (g *Gateway) unregister(s *Session, reason string, kicked bool) bool {
	if s.closed.Swap(true) {
		return false
	}
	defer s.closeSends()
	if g.pres != nil {
		defer g.pres.SessionClosed(s.info, reason, kicked)
	}
	g.mu.Lock()
	a := g.accounts[s.subject]
	if a != nil {
		for i, x := range a.sessions {
			if x == s {
				last := len(a.sessions) - 1
				a.sessions[i] = a.sessions[last]
				a.sessions[last] = nil
				a.sessions = a.sessions[:last]
				break
			}
		}
		g.dropIdleLocked(s.subject, a)
	}
	for subj := range s.supers {
		g.leaveSuperLocked(s, subj)
	}
	g.mu.Unlock()
	g.m.sessions.Dec()
	g.roomsGone(s)
	return true
}

// sessions returns every live session.
func (g *Gateway) allSessions() []*Session {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []*Session
	for _, a := range g.accounts {
		out = append(out, a.sessions...)
	}
	return out
}

// SessionInfos lists every live session as the services see it (the
// presence reporter repairs its bucket from it).
func (g *Gateway) SessionInfos() []buswire.Session {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []buswire.Session
	for _, a := range g.accounts {
		for _, s := range a.sessions {
			out = append(out, s.info)
		}
	}
	return out
}

// dispatch delivers bus pushes to the sessions they address. It runs in one
// goroutine so that pushes to an account keep their order.
func (g *Gateway) dispatch() {
	defer g.wg.Done()
	var kicks []*Session
	for msg := range g.pushCh {
		if msg == nil {
			return
		}
		g.m.pushes.Inc()
		var p buswire.Push
		if err := buswire.DecodePush(msg.Data, &p); err != nil {
			g.log.Warn("bad push on the bus", "subject", msg.Subject, "err", err)
			continue
		}
		if isSuperSubject(msg.Subject) {
			g.dispatchSuper(msg.Subject, &p)
			continue
		}
		kicks = kicks[:0]
		var slow []*Session
		g.mu.Lock()
		a := g.accounts[msg.Subject]
		if a != nil && p.Op == imapi.OpSuperEvent {
			g.superEventLocked(a.sessions, p.Body)
			for _, pl := range a.pending {
				if len(pl.events) < maxPendingEvents {
					pl.events = append(pl.events, p.Body)
				} else {
					pl.overflow = true
				}
			}
		}
		if a != nil {
			for _, s := range a.sessions {
				id := s.info.SessionID
				if id == p.ExceptSession || (p.OnlySession != "" && id != p.OnlySession) {
					continue
				}
				if p.Op == imapi.OpKick {
					if p.KickDeviceType == "" || p.KickDeviceType == "*" || p.KickDeviceType == s.info.DeviceType {
						kicks = append(kicks, s)
					}
					continue
				}
				if s.t.Push(p.Op, p.Body) {
					g.m.pushDelivered.Inc()
				} else {
					slow = append(slow, s)
				}
			}
		}
		g.mu.Unlock()
		for _, s := range slow {
			if g.unregister(s, ReasonSlow, true) {
				g.m.slowConsumers.Inc()
				g.log.Info("slow consumer dropped", "session", s.info.SessionID)
			}
		}
		if len(kicks) > 0 {
			k := imapi.Kick{Code: imapi.ErrKicked}
			if len(p.Body) > 0 {
				_ = json.Unmarshal(p.Body, &k)
				if k.Code == imapi.OK {
					k.Code = imapi.ErrKicked
				}
			}
			for _, s := range kicks {
				if g.unregister(s, k.Reason, true) {
					g.m.kicks.WithLabelValues("kicked").Inc()
					s.t.Close(k)
				}
			}
		}
	}
}

// replyMux routes service replies to their requests through one wildcard
// subscription, so that a request costs no goroutine and no subscription.
type replyMux struct {
	prefix string
	next   atomic.Uint64
	mu     sync.Mutex
	wait   map[uint64]*pending
	sub    *nats.Subscription
}

type pending struct {
	done     func(Reply)
	start    time.Time
	deadline time.Time
}

func (r *replyMux) start(g *Gateway) error {
	r.prefix = nats.NewInbox() + "."
	r.wait = make(map[uint64]*pending)
	sub, err := g.nc.Subscribe(r.prefix+"*", func(m *nats.Msg) { r.handle(g, m) })
	if err != nil {
		return fmt.Errorf("gateway: subscribe replies: %w", err)
	}
	_ = sub.SetPendingLimits(-1, -1)
	r.sub = sub
	return nil
}

func (r *replyMux) send(g *Gateway, subject string, data []byte, done func(Reply)) {
	id := r.next.Add(1)
	now := time.Now()
	p := &pending{done: done, start: now, deadline: now.Add(g.cfg.RequestTimeout.D())}
	r.mu.Lock()
	r.wait[id] = p
	r.mu.Unlock()
	if err := g.nc.PublishMsg(&nats.Msg{Subject: subject, Reply: r.prefix + strconv.FormatUint(id, 10), Data: data}); err != nil {
		if r.take(id) != nil {
			done(errReply(imapi.ErrUnavailable, "bus: "+err.Error()))
		}
	}
}

func (r *replyMux) take(id uint64) *pending {
	r.mu.Lock()
	p := r.wait[id]
	delete(r.wait, id)
	r.mu.Unlock()
	return p
}

func (r *replyMux) handle(g *Gateway, m *nats.Msg) {
	id, err := strconv.ParseUint(strings.TrimPrefix(m.Subject, r.prefix), 10, 64)
	if err != nil {
		return
	}
	p := r.take(id)
	if p == nil {
		return // timed out already
	}
	g.m.requestSeconds.Observe(time.Since(p.start).Seconds())
	if len(m.Data) == 0 && m.Header.Get("Status") == "503" {
		r := errReply(imapi.ErrUnavailable, "no service for this request")
		r.noResponders = true
		p.done(r)
		return
	}
	var rep buswire.Reply
	if err := buswire.DecodeReply(m.Data, &rep); err != nil {
		p.done(errReply(imapi.ErrInternal, "bad service reply"))
		return
	}
	if rep.Code != imapi.OK {
		body := []byte(rep.Body)
		if len(body) == 0 {
			body = errorBody(rep.Code, rep.Message)
		}
		// else the service's own error body (an imapi.Error with a hint
		// such as retry_after_ms), passed on as it is.
		p.done(Reply{Code: rep.Code, Body: body})
		return
	}
	p.done(Reply{Body: rep.Body})
}

// expire fails requests whose deadline passed.
func (r *replyMux) expire(now time.Time) {
	var late []*pending
	r.mu.Lock()
	for id, p := range r.wait {
		if now.After(p.deadline) {
			late = append(late, p)
			delete(r.wait, id)
		}
	}
	r.mu.Unlock()
	for _, p := range late {
		p.done(errReply(imapi.ErrTimeout, "service did not answer in time"))
	}
}

// failAll answers every pending request (at shutdown).
func (r *replyMux) failAll() {
	r.mu.Lock()
	w := r.wait
	r.wait = make(map[uint64]*pending)
	r.mu.Unlock()
	for _, p := range w {
		p.done(errReply(imapi.ErrUnavailable, ReasonDraining))
	}
}
