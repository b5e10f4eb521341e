package sdk

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/link/linkquic"
)

// Client is a connection manager and message pipeline for one account on
// one device. Its methods are safe for concurrent use.
type Client struct {
	cfg    Config
	log    *slog.Logger
	dial   Dialer
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	events chan Event
	loopIn chan loopMsg
	loop   *delivery // owned by the delivery loop (delivery.go)
	jobs   *jobQueue
	// dropped counts the events dropped because the application was
	// behind (DroppedEvents).
	dropped atomic.Uint64

	mu      sync.Mutex
	cur     *conn
	state   State
	changed chan struct{} // closed and replaced on every state change
	stopErr error
	outbox  map[*outItem]struct{} // unacknowledged sends; order by outItem.order
	outSeq  uint64
	// waiting: the sends of the outbox not out on winConn, in queueing
	// order; pumpSends sends them as the window allows (window.go).
	waiting []*outItem
	win     sendWindow
	winConn *conn         // the connection win belongs to
	wake    chan struct{} // wakes pumpSends
	// pausedUntil: after an overload refusal (an overloaded server sheds
	// with 503) no send goes out before this time. One pause for the
	// whole client, not one backoff per message: per-message resends of a
	// deep outbox would keep an overloaded server busy refusing them.
	pausedUntil time.Time
	session     string
	started     bool
	closed      bool
	lastSeqs    map[string]int64  // copy of the delivery loop's, for LastSeqs
	rooms       map[string]string // rooms entered → entry token (rejoin.go)
	connGen     uint64            // counts connections, for room re-entry
	// roomBack: the rooms being entered again on connection gen, each
	// with a channel closed once that is answered: until then the room's
	// requests wait (waitRoomBack), or the service refuses them "not in
	// room" since the new session is not in it yet.
	roomBack map[string]roomBack
}

type roomBack struct {
	gen uint64
	ch  chan struct{}
}

// New validates cfg and builds a client; Start connects it.
func New(cfg Config) (*Client, error) {
	cfg.applyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Client{
		cfg:      cfg,
		log:      cfg.Logger.With("component", "sdk", "account", cfg.Account),
		dial:     cfg.Dialer,
		ctx:      ctx,
		cancel:   cancel,
		events:   make(chan Event, cfg.EventBuffer),
		loopIn:   make(chan loopMsg, 256),
		jobs:     newJobQueue(),
		changed:  make(chan struct{}),
		lastSeqs: map[string]int64{},
		outbox:   map[*outItem]struct{}{},
		wake:     make(chan struct{}, 1),
		rooms:    map[string]string{},
		roomBack: map[string]roomBack{},
	}
	c.loop = newDelivery(c)
	if c.dial == nil {
		c.dial = LinkDialerWith(cfg.ServerKeys, cfg.Limits, cfg.Link)
	}
	return c, nil
}

// Events delivers what happens, in order. It is closed by Close.
//
// The client never waits for the application to read it: acks, answers and
// the connection go on regardless. When Config.EventBuffer events wait
// unread, the application is behind until it has read half of them: in
// the meantime messages, notices and room messages are held back on the
// server (fetched again afterwards, none twice; rooms: as much as their
// recent history keeps, EventRoom reports a gap) and every other event is
// dropped. The first event after that is an EventDropped with the number
// dropped; DroppedEvents counts them all.
func (c *Client) Events() <-chan Event { return c.events }

// DroppedEvents is the number of events dropped so far because the
// application was behind in reading Events.
func (c *Client) DroppedEvents() uint64 { return c.dropped.Load() }

// Start begins connecting in the background.
func (c *Client) Start() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started || c.closed {
		return
	}
	c.started = true
	c.wg.Add(4)
	go c.pumpSends()
	go c.run()
	go c.deliveryLoop()
	go c.syncer()
}

// Close stops the client: it closes the connection without logging out and
// closes Events. Unacknowledged messages are dropped: their SendAsync
// results are ErrClosed.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	cur := c.cur
	started := c.started
	unacked := c.outbox
	c.outbox = map[*outItem]struct{}{}
	c.mu.Unlock()
	for it := range unacked {
		it.done <- SendResult{Err: ErrClosed}
	}
	c.cancel()
	if cur != nil {
		cur.close(ErrClosed)
	}
	c.jobs.close()
	c.wg.Wait()
	c.setState(StateStopped, ErrClosed, false)
	if started {
		close(c.events)
	}
	return nil
}

// Logout ends the session on the server and closes the client.
func (c *Client) Logout(ctx context.Context) error {
	err := c.Request(ctx, imapi.OpLogout, nil, nil)
	_ = c.Close()
	return err
}

// State returns the connection state.
func (c *Client) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// SessionID is the id of the current (or last) session.
func (c *Client) SessionID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.session
}

// WaitConnected waits until the client is logged in. It returns the error
// that stopped the client (ErrAuth, ErrKicked, ErrClosed) or ctx's.
func (c *Client) WaitConnected(ctx context.Context) error {
	for {
		c.mu.Lock()
		st, ch, err := c.state, c.changed, c.stopErr
		c.mu.Unlock()
		switch st {
		case StateConnected:
			return nil
		case StateStopped:
			return err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (c *Client) setState(s State, err error, emit bool) {
	c.mu.Lock()
	if c.state == s && s != StateDisconnected {
		c.mu.Unlock()
		return
	}
	if c.state == StateStopped {
		c.mu.Unlock()
		return
	}
	c.state = s
	if s == StateStopped {
		c.stopErr = err
	}
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
	if emit {
		c.post(appEvent{Event{Kind: EventState, State: s, Err: err}})
	}
}

// LastSeqs returns the last delivered sequence of every conversation, for an
// application that persists them and passes them back in Config.LastSeqs.
func (c *Client) LastSeqs() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int64, len(c.lastSeqs))
	for k, v := range c.lastSeqs {
		out[k] = v
	}
	return out
}

// Request sends op with req (JSON-encoded; nil for none) and decodes the
// answer into resp (nil to ignore it). It waits for a connection if there is
// none. Server refusals are *imapi.Error.
func (c *Client) Request(ctx context.Context, op imapi.Op, req, resp any) error {
	var body []byte
	if req != nil {
		b, err := json.Marshal(req)
		if err != nil {
			return fmt.Errorf("sdk: encode %s: %w", op, err)
		}
		body = b
	}
	in, err := c.RequestRaw(ctx, op, body)
	if err != nil {
		return err
	}
	if resp != nil && len(in) > 0 {
		if err := json.Unmarshal(in, resp); err != nil {
			return fmt.Errorf("sdk: decode %s answer: %w", op, err)
		}
	}
	return nil
}

// RequestRaw is Request with raw JSON bodies.
func (c *Client) RequestRaw(ctx context.Context, op imapi.Op, body []byte) ([]byte, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.RequestTimeout)
		defer cancel()
	}
	cur, err := c.waitConn(ctx)
	if err != nil {
		return nil, err
	}
	if err := c.waitRoomBack(ctx, op, body); err != nil {
		return nil, err
	}
	in, err := cur.request(ctx, op, body)
	if err != nil {
		return nil, err
	}
	if in.Code != imapi.OK {
		return nil, codeError(in)
	}
	return in.Body, nil
}

func codeError(in Incoming) error {
	e := &imapi.Error{Code: in.Code}
	_ = json.Unmarshal(in.Body, e)
	e.Code = in.Code
	return e
}

// waitConn returns the current connection, waiting for one.
func (c *Client) waitConn(ctx context.Context) (*conn, error) {
	for {
		c.mu.Lock()
		cur, st, ch, serr, closed := c.cur, c.state, c.changed, c.stopErr, c.closed
		c.mu.Unlock()
		if closed {
			return nil, ErrClosed
		}
		if cur != nil && st == StateConnected {
			return cur, nil
		}
		if st == StateStopped {
			return nil, serr
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-c.ctx.Done():
			return nil, ErrClosed
		}
	}
}

// NewClientMsgID returns a random client message id.
func NewClientMsgID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// outItem is a message waiting for its ack. It stays in the outbox across
// reconnects and is resent with the same client_msg_id (the server dedupes).
type outItem struct {
	order  uint64 // queueing order, kept on resend
	sentNo uint64 // its number in the window of onCon (sendWindow.take)
	id     string
	body   []byte
	done   chan SendResult
	onCon  *conn // the connection it is out on; nil while it waits
}

// SendResult is how one send ended (SendAsync): Ack once the server has
// stored the message durably, or Err: an *imapi.Error when the server
// refused it for good (a refusal for overload is retried, not reported),
// ErrClosed when the client was closed before the ack came.
type SendResult struct {
	Ack imapi.SendAck
	Err error
}

// Send queues a message and waits for its ack (the server sends it once the
// message is durable). If ctx ends first the message stays queued and is
// still sent; its ack then arrives as an EventSent. An empty ClientMsgID is
// filled in.
func (c *Client) Send(ctx context.Context, req imapi.SendReq) (imapi.SendAck, error) {
	done, err := c.SendAsync(&req)
	if err != nil {
		return imapi.SendAck{}, err
	}
	select {
	case r := <-done:
		return r.Ack, r.Err
	case <-ctx.Done():
		return imapi.SendAck{}, ctx.Err()
	case <-c.ctx.Done():
		return imapi.SendAck{}, ErrClosed
	}
}

// SendText sends a text message ({"text": text}) to an account (ConvP2P) or
// a group (ConvGroup).
func (c *Client) SendText(ctx context.Context, convType int, to, text string) (imapi.SendAck, error) {
	body, _ := json.Marshal(map[string]string{"text": text})
	return c.Send(ctx, imapi.SendReq{ConvType: convType, To: to, Type: "text", Body: body})
}

// SendAsync queues a message without waiting. The returned channel yields
// its result once (it is buffered: nobody has to read it); the result also
// arrives as EventSent or EventSendFailed. When Config.SendQueue messages
// already wait for their acks it queues nothing and returns
// ErrSendQueueFull.
func (c *Client) SendAsync(req *imapi.SendReq) (<-chan SendResult, error) {
	if req.ClientMsgID == "" {
		req.ClientMsgID = NewClientMsgID()
	}
	if req.Type == "" {
		req.Type = "text"
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("sdk: encode message: %w", err)
	}
	it := &outItem{id: req.ClientMsgID, body: body, done: make(chan SendResult, 1)}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	if len(c.outbox) >= c.cfg.SendQueue {
		c.mu.Unlock()
		return nil, ErrSendQueueFull
	}
	c.outSeq++
	it.order = c.outSeq
	c.outbox[it] = struct{}{}
	c.waiting = append(c.waiting, it)
	c.mu.Unlock()
	c.wakeSender()
	return it.done, nil
}

// Pending is the number of messages waiting for their ack. A message
// leaves it when its result is known, a moment before its EventSent or
// EventSendFailed is in Events: an application that counts results from
// Events waits for those, not for Pending to reach zero.
func (c *Client) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.outbox)
}

// finish reports how a send of the outbox ended, once.
func (c *Client) finish(it *outItem, r SendResult) {
	c.mu.Lock()
	_, found := c.outbox[it]
	delete(c.outbox, it)
	c.mu.Unlock()
	if !found {
		return
	}
	it.done <- r
	if r.Err != nil {
		c.post(appEvent{Event{Kind: EventSendFailed, ClientMsgID: it.id, Err: r.Err}})
		return
	}
	c.post(sendAcked{ack: r.Ack, clientMsgID: it.id})
}

// post hands something to the delivery loop.
func (c *Client) post(m loopMsg) {
	select {
	case c.loopIn <- m:
	case <-c.ctx.Done():
	}
}

// run is the connection manager: connect (racing candidates), serve the
// connection until it ends, back off, repeat.
func (c *Client) run() {
	defer c.wg.Done()
	attempt := 0
	for c.ctx.Err() == nil {
		c.setState(StateConnecting, nil, true)
		cur, resp, err := c.connect()
		if err != nil {
			if c.ctx.Err() != nil {
				return
			}
			var ie *imapi.Error
			if errors.As(err, &ie) && authRefused(ie.Code) {
				c.log.Warn("login refused", "code", ie.Code)
				c.setState(StateStopped, fmt.Errorf("%w: %v", ErrAuth, err), true)
				return
			}
			c.setState(StateDisconnected, err, true)
			c.log.Debug("connect failed", "err", err)
			if hint, ok := retryHint(err); ok {
				// The server is up and said when to come back (a login
				// refused under load): that, not a backoff that has grown
				// over the outage, and the attempt count stays.
				c.sleep(c.hintPause(hint))
				continue
			}
			c.sleep(c.backoff(attempt))
			attempt++
			continue
		}
		attempt = 0
		c.mu.Lock()
		c.cur = cur
		c.startWindow(cur)
		c.session = resp.SessionID
		c.connGen++
		gen := c.connGen
		for id, b := range c.roomBack {
			close(b.ch) // a previous connection's: its waiters go on this one
			delete(c.roomBack, id)
		}
		for id := range c.rooms {
			c.roomBack[id] = roomBack{gen: gen, ch: make(chan struct{})}
		}
		c.mu.Unlock()
		c.setState(StateConnected, nil, true)
		c.onConnected(gen)

		hb := time.Duration(resp.HeartbeatSec) * time.Second
		if hb <= 0 {
			hb = 30 * time.Second
		}
		go c.heartbeat(cur, hb)
		<-cur.done

		c.mu.Lock()
		c.cur = nil
		c.mu.Unlock()
		kick := cur.kicked()
		switch {
		case c.ctx.Err() != nil:
			return
		case kick != nil && kick.Code == imapi.ErrKicked:
			c.setState(StateStopped, ErrKicked, true)
			return
		case kick != nil && authRefused(kick.Code):
			// An edge answered the login from the token's signature and the
			// core then refused it (revoked token, disabled user): the same
			// as a refused login, so no reconnect loop.
			c.log.Warn("login refused after the edge's answer", "code", kick.Code)
			c.setState(StateStopped, fmt.Errorf("%w: %s: %s", ErrAuth, kick.Code, kick.Reason), true)
			return
		case kick != nil:
			// Draining: reconnect now (the gateway is going away), with a
			// little jitter so that clients do not arrive together.
			c.setState(StateDisconnected, fmt.Errorf("server: %s", kick.Reason), true)
			c.sleep(time.Duration(mrand.Int64N(int64(c.cfg.BackoffMin) + 1)))
		default:
			c.setState(StateDisconnected, cur.err, true)
			c.sleep(c.backoff(0))
			attempt = 1
		}
	}
}

// authRefused reports whether a code refuses the credentials themselves, so
// that retrying cannot help.
func authRefused(c imapi.Code) bool {
	return c == imapi.ErrUnauthorized || c == imapi.ErrUserDisabled || c == imapi.ErrForbidden
}

// retryHint is the server's retry-after hint of a retryable refusal in err
// (an *imapi.Error whose body carried retry_after_ms).
func retryHint(err error) (time.Duration, bool) {
	var ie *imapi.Error
	if !errors.As(err, &ie) || ie.RetryAfterMs <= 0 || !(ie.Code.Retryable() || ie.Code == imapi.ErrRateLimited) {
		return 0, false
	}
	return time.Duration(ie.RetryAfterMs) * time.Millisecond, true
}

// hintPause is the wait before coming back after a server's retry-after
// hint: the hint plus up to a quarter more (never sooner than the server
// said; the server spreads its hints, this spreads clients refused with
// the same one), at most BackoffMax.
func (c *Client) hintPause(hint time.Duration) time.Duration {
	d := hint + time.Duration(mrand.Int64N(int64(hint/4)+1))
	return min(d, c.cfg.BackoffMax)
}

// backoff is exponential with full jitter.
func (c *Client) backoff(attempt int) time.Duration {
	d := c.cfg.BackoffMin << min(attempt, 20)
	if d > c.cfg.BackoffMax || d <= 0 {
		d = c.cfg.BackoffMax
	}
	return time.Duration(mrand.Int64N(int64(d)) + 1)
}

func (c *Client) sleep(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-c.ctx.Done():
	}
}

// onConnected resends the outbox in order (through the new connection's
// window, startWindow), schedules a sync of the conversation list and of
// the notices, and enters the rooms again.
func (c *Client) onConnected(gen uint64) {
	// The rooms entered before this connection: one the app enters from
	// now on is entered on this connection already.
	c.mu.Lock()
	rooms := make(map[string]string, len(c.rooms))
	maps.Copy(rooms, c.rooms)
	c.mu.Unlock()
	c.wakeSender()
	c.jobs.push(job{convList: true})
	c.post(noticeSyncDue{})
	c.post(rejoinStart{gen: gen, rooms: rooms})
}

func (c *Client) heartbeat(cur *conn, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-cur.done:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(c.ctx, every)
			_, err := cur.request(ctx, imapi.OpHeartbeat, nil)
			cancel()
			if err != nil {
				// No answer within an interval: the link is dead.
				cur.close(fmt.Errorf("sdk: heartbeat: %w", err))
				return
			}
		}
	}
}

// connect races the candidate addresses and logs in on the winner only:
// attempt i (a connection and its handshake, Dialer) starts RaceDelay after
// attempt i-1, or at once when one fails; the first transport up wins, the
// others are cancelled and closed unused, and only then is the login sent,
// on the winner alone. Logging in on two connections at once would open two
// sessions for one device, the second taking over from the first. When the
// winner's login fails for a reason that another address may not share (the
// connection broke, the server is unavailable), the race starts again over
// the candidates not yet used; a refusal of the credentials ends it.
func (c *Client) connect() (*conn, imapi.LoginResp, error) {
	addrs := c.cfg.Addresses
	// resolveErr is kept to tell "the LBS was unreachable too" apart from
	// "the LBS answered, but no entry point took the connection". A resolver
	// may return addresses with an error (the LBS client's default link when
	// no LBS answered); they are used.
	var resolveErr error
	if c.cfg.Resolver != nil {
		rctx, cancel := context.WithTimeout(c.ctx, c.cfg.ConnectTimeout)
		got, err := c.cfg.Resolver(rctx)
		cancel()
		if len(got) > 0 {
			addrs = got
		}
		if err != nil {
			resolveErr = err
			c.log.Debug("resolver failed", "err", err, "addresses", addrs)
		}
	}
	if len(addrs) == 0 {
		return nil, imapi.LoginResp{}, errors.New("sdk: no addresses")
	}
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.ConnectTimeout)
	defer cancel()
	left := slices.Clone(addrs)
	var firstErr error
	raced := &raceLog{}
	for len(left) > 0 {
		t, won, used, err := c.race(ctx, left, raced)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			break
		}
		resp, err := c.login(ctx, t)
		if err == nil {
			if c.cfg.Reporter != nil {
				if rep, ok := raced.report(); ok {
					go c.cfg.Reporter(rep)
				}
			}
			return newConn(c, t), resp, nil
		}
		if firstErr == nil {
			firstErr = err
		}
		var ie *imapi.Error
		if errors.As(err, &ie) && ie.Code != imapi.ErrUnavailable && ie.Code != imapi.ErrTimeout {
			return nil, imapi.LoginResp{}, err // a server refused the login
		}
		c.log.Debug("login failed, trying the other candidates", "addr", won, "err", err)
		left = slices.DeleteFunc(left, func(a string) bool { return slices.Contains(used, a) })
	}
	var ie *imapi.Error
	if errors.As(firstErr, &ie) && ie.Code != imapi.ErrUnavailable && ie.Code != imapi.ErrTimeout {
		return nil, imapi.LoginResp{}, firstErr
	}
	return nil, imapi.LoginResp{}, errors.Join(fmt.Errorf("%w: %w", ErrUnreachable, firstErr), resolveErr)
}

// race opens transports to addrs (attempt i starts RaceDelay after attempt
// i-1, or at once when one fails) and returns the first one up, its
// address, and the addresses whose attempts ended (the winner, those that
// failed): the others were still running and are cancelled, and a
// transport that still comes up is closed without a login.
// The attempts are recorded in raced (Config.Reporter).
func (c *Client) race(ctx context.Context, addrs []string, raced *raceLog) (Transport, string, []string, error) {
	ctx, cancel := context.WithCancel(ctx)
	type result struct {
		t    Transport
		addr string
		err  error
		i    int
	}
	results := make(chan result, len(addrs))
	started := 0
	startNext := func() {
		addr := addrs[started]
		started++
		i := raced.start(addr)
		go func() {
			t, err := c.dial(ctx, addr)
			if err == nil || ctx.Err() == nil {
				raced.dialed(i, err) // not when cut short because another won
			}
			results <- result{t, addr, err, i}
		}()
	}
	// The wait before the next attempt: a TCP candidate right after a QUIC
	// one (the same entry point, as LBSResolver lists them) gets only
	// QUICHeadStart, so that where UDP is blocked TCP is not held up.
	stagger := func() time.Duration {
		if started < len(addrs) && isQUIC(addrs[started-1]) && !isQUIC(addrs[started]) {
			return c.cfg.QUICHeadStart
		}
		return c.cfg.RaceDelay
	}
	startNext()
	timer := time.NewTimer(stagger())
	defer timer.Stop()
	var firstErr error
	var used []string
	pending := 1
	var winner *result
	for pending > 0 && winner == nil {
		select {
		case <-timer.C:
			if started < len(addrs) {
				startNext()
				pending++
				timer.Reset(stagger())
			}
		case r := <-results:
			pending--
			used = append(used, r.addr)
			if r.err == nil {
				winner = &r
				raced.won(r.i)
				break
			}
			if firstErr == nil {
				firstErr = r.err
			}
			if started < len(addrs) {
				startNext()
				pending++
				timer.Reset(stagger())
			}
		}
	}
	cancel()
	// Close the losers that still come up: they never log in.
	go func(n int) {
		for range n {
			if r := <-results; r.t != nil {
				_ = r.t.Close()
			}
		}
	}(pending)
	if winner == nil {
		if firstErr == nil {
			firstErr = errors.New("sdk: dial failed")
		}
		return nil, "", used, firstErr
	}
	return winner.t, winner.addr, used, nil
}

func isQUIC(addr string) bool { return strings.HasPrefix(addr, linkquic.Scheme) }

// login logs in on t (closed when it fails or ctx ends first).
func (c *Client) login(ctx context.Context, t Transport) (imapi.LoginResp, error) {
	stop := context.AfterFunc(ctx, func() { _ = t.Close() })
	defer stop()
	fail := func(err error) (imapi.LoginResp, error) {
		_ = t.Close()
		if ctx.Err() != nil {
			return imapi.LoginResp{}, fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		return imapi.LoginResp{}, err
	}
	body, _ := json.Marshal(imapi.LoginReq{
		AppKey: c.cfg.AppKey, Account: c.cfg.Account, Token: c.cfg.Token, DeviceID: c.cfg.DeviceID,
		DeviceType: c.cfg.DeviceType, SDKVersion: c.cfg.SDKVersion, Platform: c.cfg.Platform,
	})
	if err := t.Send(imapi.OpLogin, 1, body); err != nil {
		return fail(err)
	}
	in, err := t.Recv()
	if err != nil {
		return fail(err)
	}
	if in.Push || in.Seq != 1 {
		return fail(fmt.Errorf("sdk: unexpected frame %s before the login answer", in.Op))
	}
	if in.Code != imapi.OK {
		return fail(codeError(in))
	}
	var resp imapi.LoginResp
	if err := json.Unmarshal(in.Body, &resp); err != nil {
		return fail(fmt.Errorf("sdk: login answer: %w", err))
	}
	if !stop() {
		return fail(ctx.Err()) // the connect timeout ended while finishing
	}
	return resp, nil
}

// conn is one logged-in connection: its reader goroutine matches responses
// to requests and hands pushes to the delivery loop.
type conn struct {
	c    *Client
	t    Transport
	seq  atomic.Uint32
	done chan struct{}

	mu      sync.Mutex
	pending map[uint32]func(Incoming, error)
	err     error
	kick    *imapi.Kick
	ended   bool
}

func newConn(c *Client, t Transport) *conn {
	cur := &conn{c: c, t: t, done: make(chan struct{}), pending: map[uint32]func(Incoming, error){}}
	cur.seq.Store(1) // 1 was the login
	go cur.read()
	return cur
}

func (cur *conn) kicked() *imapi.Kick {
	cur.mu.Lock()
	defer cur.mu.Unlock()
	return cur.kick
}

func (cur *conn) read() {
	for {
		in, err := cur.t.Recv()
		if err != nil {
			cur.close(err)
			return
		}
		if !in.Push {
			cur.mu.Lock()
			cb := cur.pending[in.Seq]
			delete(cur.pending, in.Seq)
			cur.mu.Unlock()
			if cb != nil {
				cb(in, nil)
			}
			continue
		}
		if in.Op == imapi.OpKick {
			var k imapi.Kick
			_ = json.Unmarshal(in.Body, &k)
			cur.mu.Lock()
			cur.kick = &k
			cur.mu.Unlock()
		}
		cur.c.post(pushed{in})
	}
}

// close ends the connection and fails its pending requests.
func (cur *conn) close(err error) {
	cur.mu.Lock()
	if cur.ended {
		cur.mu.Unlock()
		return
	}
	cur.ended = true
	cur.err = err
	p := cur.pending
	cur.pending = nil
	cur.mu.Unlock()
	_ = cur.t.Close()
	for _, cb := range p {
		cb(Incoming{}, fmt.Errorf("%w: %v", ErrDisconnected, err))
	}
	close(cur.done)
}

// send writes a request; cb gets the response or a disconnection error.
func (cur *conn) send(op imapi.Op, body []byte, cb func(Incoming, error)) {
	seq := cur.seq.Add(1)
	if seq == 0 {
		seq = cur.seq.Add(1)
	}
	cur.mu.Lock()
	if cur.ended {
		err := cur.err
		cur.mu.Unlock()
		cb(Incoming{}, fmt.Errorf("%w: %v", ErrDisconnected, err))
		return
	}
	cur.pending[seq] = cb
	cur.mu.Unlock()
	if err := cur.t.Send(op, seq, body); err != nil {
		cur.close(err)
	}
}

// request sends and waits.
func (cur *conn) request(ctx context.Context, op imapi.Op, body []byte) (Incoming, error) {
	type res struct {
		in  Incoming
		err error
	}
	ch := make(chan res, 1)
	cur.send(op, body, func(in Incoming, err error) { ch <- res{in, err} })
	select {
	case r := <-ch:
		return r.in, r.err
	case <-ctx.Done():
		return Incoming{}, ctx.Err()
	}
}
