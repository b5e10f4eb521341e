// Package service implements the IM core's stateless app services. A Service
// subscribes to imapi.ServiceSubject(cluster, op) for every request op with
// the queue group imapi.ServiceQueue, answers each imapi.BusRequest with an
// imapi.BusReply, and publishes imapi.BusPush messages to the subjects of the
// accounts concerned. Any number of nodes can run side by side on one bus.
package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/logintoken"
	"github.com/longlink/longlink/core/service/internal/dispatch"
	"github.com/longlink/longlink/core/store"
	"github.com/longlink/longlink/core/webhook"
	"github.com/longlink/longlink/pkg/logging"
)

// Deps are the services' injected dependencies.
type Deps struct {
	NATS       *nats.Conn
	Store      store.Store
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
	// Hooks are the apps' webhooks (core/webhook): the moderation hook asked
	// before a message is stored, and the message, login and logout events
	// queued for delivery. Nil: no webhooks.
	Hooks Hooks
	// JetStream carries super-group side work (mentions, webhook copies)
	// to durable workers. Nil: super-group sends that need it get 503.
	JetStream jetstream.JetStream
	// Offline, when set, hears of every stored message and its recipients
	// (the sender excluded) to send offline push notifications (core/push).
	Offline OfflinePusher
}

// OfflinePusher is what the services need of core/push. MessageStored must
// not block.
type OfflinePusher interface {
	MessageStored(appkey string, m *imapi.Message, recipients []string)
}

// Hooks is what the services need of core/webhook.
type Hooks interface {
	Moderate(ctx context.Context, appkey string, m webhook.ModerationRequest) (webhook.Decision, error)
	Publish(ctx context.Context, appkey string, ev webhook.Event) error
}

type handler = dispatch.Handler

// Service is one app service node.
type Service struct {
	cfg     Config
	nc      *nats.Conn
	st      store.Store
	log     *slog.Logger
	metrics *metrics
	now     func() time.Time
	hooks   Hooks
	js      jetstream.JetStream
	super   superState
	offline OfflinePusher
	signer  *logintoken.Signer // nil: opaque tokens

	disp *dispatch.Dispatcher
	apps appCache
	// blockBoth: the apps whose blacklist blocks both ways.
	blockBoth map[string]bool

	rooms       roomState
	roomMetrics *roomMetrics
}

// New validates cfg and builds a node; Start subscribes it to the bus.
func New(cfg Config, deps Deps) (*Service, error) {
	cfg.applyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("service: %w", err)
	}
	if deps.NATS == nil || deps.Store == nil {
		return nil, errors.New("service: NATS and Store are required")
	}
	log := logging.OrDiscard(deps.Logger)
	reg := deps.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("service: %w", err)
	}
	now := deps.Now
	if now == nil {
		now = time.Now
	}
	s := &Service{
		cfg: cfg, nc: deps.NATS, st: deps.Store, log: log.With("component", "service"),
		metrics: m, now: now, hooks: deps.Hooks, js: deps.JetStream, offline: deps.Offline,
	}
	s.disp, err = dispatch.New(dispatch.Config{
		Cluster: cfg.Cluster, MaxInFlight: cfg.MaxInFlight, MaxRequestBytes: cfg.MaxRequestBytes, RequestTimeout: cfg.RequestTimeout.D(),
	}, deps.NATS, s.log, reg, m.oversize)
	if err != nil {
		return nil, fmt.Errorf("service: %w", err)
	}
	if s.super.m, err = newSuperMetrics(reg); err != nil {
		return nil, fmt.Errorf("service: %w", err)
	}
	if cfg.TokenKey != nil {
		if s.signer, err = cfg.TokenKey.Signer(); err != nil {
			return nil, fmt.Errorf("service: token_key: %w", err)
		}
	}
	s.apps.st = deps.Store
	s.blockBoth = map[string]bool{}
	for _, a := range cfg.Apps {
		s.blockBoth[a.AppKey] = a.Blacklist == BlacklistBoth
	}
	if s.roomMetrics, err = newRoomMetrics(reg); err != nil {
		return nil, fmt.Errorf("service: %w", err)
	}
	s.disp.Add(dispatch.Route{Op: imapi.OpSend, Handle: s.send, Ordered: true})
	for op, h := range map[imapi.Op]handler{
		imapi.OpLogin:           s.login,
		imapi.OpHeartbeat:       s.heartbeat,
		imapi.OpLogout:          s.logout,
		imapi.OpSync:            s.sync,
		imapi.OpHistory:         s.history,
		imapi.OpRead:            s.read,
		imapi.OpRecall:          s.recall,
		imapi.OpConvList:        s.convList,
		imapi.OpGroupCreate:     s.groupCreate,
		imapi.OpGroupAdd:        s.groupAdd,
		imapi.OpGroupRemove:     s.groupRemove,
		imapi.OpGroupInfo:       s.groupInfo,
		imapi.OpGroupList:       s.groupList,
		imapi.OpGroupLeave:      s.groupLeave,
		imapi.OpGroupDismiss:    s.groupDismiss,
		imapi.OpGroupUpdate:     s.groupUpdate,
		imapi.OpGroupRole:       s.groupSetRole,
		imapi.OpGroupTransfer:   s.groupTransfer,
		imapi.OpRoomEnter:       s.roomEnter,
		imapi.OpRoomLeave:       s.roomLeave,
		imapi.OpRoomSend:        s.roomSend,
		imapi.OpRoomMembers:     s.roomMembers,
		imapi.OpRoomHistory:     s.roomHistory,
		imapi.OpRoomInfo:        s.roomInfo,
		imapi.OpRoomSetRole:     s.roomSetRole,
		imapi.OpRoomMute:        s.roomMute,
		imapi.OpRoomKick:        s.roomKick,
		imapi.OpRoomClose:       s.roomClose,
		imapi.OpProfileGet:      s.profiles,
		imapi.OpProfileUpdate:   s.profileUpdate,
		imapi.OpFriendRequest:   s.friendRequest,
		imapi.OpFriendAccept:    s.friendAnswer(true),
		imapi.OpFriendReject:    s.friendAnswer(false),
		imapi.OpFriendDelete:    s.friendDelete,
		imapi.OpFriendAlias:     s.friendAlias,
		imapi.OpFriendList:      s.friendList,
		imapi.OpFriendRequests:  s.friendRequests,
		imapi.OpBlockAdd:        s.blockSet(true),
		imapi.OpBlockRemove:     s.blockSet(false),
		imapi.OpBlockList:       s.blockList,
		imapi.OpMuteAdd:         s.muteSet(true),
		imapi.OpMuteRemove:      s.muteSet(false),
		imapi.OpMuteList:        s.muteList,
		imapi.OpNoticeSync:      s.noticeSync,
		imapi.OpSuperCreate:     s.superCreate,
		imapi.OpSuperAdd:        s.superAdd,
		imapi.OpSuperRemove:     s.superRemove,
		imapi.OpSuperInfo:       s.superInfo,
		imapi.OpSuperMembers:    s.superMembers,
		imapi.OpSuperList:       s.superList,
		imapi.OpSuperLeave:      s.superLeave,
		imapi.OpSuperDismiss:    s.superDismiss,
		imapi.OpPushRegister:    s.pushRegister,
		imapi.OpPushUnregister:  s.pushUnregister,
		imapi.OpPushSettings:    s.pushSettings,
		imapi.OpPushSetSettings: s.pushSetSettings,
	} {
		s.disp.Add(dispatch.Route{Op: op, Handle: h})
	}
	return s, nil
}

// Ops lists the request ops this service answers.
func (s *Service) Ops() []imapi.Op { return s.disp.Ops() }

// Start seeds the configured apps and subscribes to every op's subject.
func (s *Service) Start(ctx context.Context) error {
	for _, a := range s.cfg.Apps {
		app := store.App{AppKey: a.AppKey, Secret: a.Secret.Reveal(), Devices: a.Devices, HeartbeatSec: int(a.Heartbeat.D() / time.Second)}
		if err := s.st.PutApp(ctx, app); err != nil {
			return fmt.Errorf("service: seed app %s: %w", a.AppKey, err)
		}
		s.apps.put(app, s.now())
	}
	if err := s.startRooms(); err != nil {
		return err
	}
	if err := s.startSuper(ctx); err != nil {
		s.stopRooms()
		return err
	}
	if err := s.disp.Start(ctx); err != nil {
		s.stopSuper(ctx)
		s.stopRooms()
		return fmt.Errorf("service: %w", err)
	}
	s.log.Info("app services subscribed", "cluster", s.cfg.Cluster, "ops", len(s.disp.Ops()))
	return nil
}

// Shutdown stops taking requests (the queue group sends new ones to other
// nodes), lets the buffered ones finish and waits for in-flight handlers.
func (s *Service) Shutdown(ctx context.Context) error {
	s.stopRooms()
	if err := s.disp.Shutdown(ctx); err != nil {
		return fmt.Errorf("service: shutdown: %w", err)
	}
	s.stopSuper(ctx)
	return nil
}

// push publishes one push to every session of account. Pushes are
// best-effort: a client that misses one catches up by sync.
func (s *Service) push(appkey, account string, op imapi.Op, body []byte, exceptSession string) {
	if account == SystemAccount {
		return
	}
	b := imapi.AppendBusPush(make([]byte, 0, 96+len(body)), &imapi.BusPush{Op: op, Body: body, ExceptSession: exceptSession})
	if err := s.nc.Publish(imapi.UserSubject(appkey, account), b); err != nil {
		s.metrics.pushErrors.Inc()
		s.log.Warn("push failed", "op", op.Name(), "err", err)
		return
	}
	s.metrics.pushes.WithLabelValues(op.Name()).Inc()
}

// pushAll sends body to every account; the sender's own session is skipped.
func (s *Service) pushAll(sess *imapi.Session, accounts []string, op imapi.Op, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		s.log.Error("encode push", "op", op.Name(), "err", err)
		return
	}
	for _, a := range accounts {
		except := ""
		if a == sess.Account {
			except = sess.SessionID
		}
		s.push(sess.AppKey, a, op, body, except)
	}
}

func decode(body []byte, v any) error {
	if len(body) == 0 {
		return imapi.Errorf(imapi.ErrBadRequest, "empty body")
	}
	if err := json.Unmarshal(body, v); err != nil {
		return imapi.Errorf(imapi.ErrBadRequest, "body: %v", err)
	}
	return nil
}

// storeErr maps store errors to API errors; anything unexpected is internal
// (logged once by serve, never sent to clients in detail).
func storeErr(err error, what string) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return imapi.Errorf(imapi.ErrNotFound, "%s not found", what)
	case errors.Is(err, store.ErrForbidden):
		return imapi.Errorf(imapi.ErrForbidden, "not a member of %s", what)
	case errors.Is(err, store.ErrExists):
		return imapi.Errorf(imapi.ErrConflict, "%s already exists", what)
	case errors.Is(err, store.ErrBlocked):
		return imapi.Errorf(imapi.ErrBlocked, "")
	case errors.Is(err, context.DeadlineExceeded):
		return imapi.Errorf(imapi.ErrTimeout, "")
	case errors.Is(err, store.ErrClosed):
		return imapi.Errorf(imapi.ErrUnavailable, "")
	case errors.Is(err, store.ErrBusy):
		// Shed before queueing: nothing was stored and clients resend the
		// same client_msg_id after a backoff, the store's hint if it has one.
		ie := imapi.Errorf(imapi.ErrUnavailable, "busy")
		var be *store.BusyError
		if errors.As(err, &be) && be.RetryAfter > 0 {
			ie.RetryAfterMs = max(1, be.RetryAfter.Milliseconds())
		}
		return ie
	}
	return err
}

// appCache keeps apps for a short while: login is hot, apps change rarely.
type appCache struct {
	st store.Store
	mu sync.Mutex
	m  map[string]cachedApp
}

type cachedApp struct {
	app     store.App
	fetched time.Time
}

const appCacheTTL = 30 * time.Second

func (c *appCache) put(a store.App, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]cachedApp{}
	}
	c.m[a.AppKey] = cachedApp{app: a, fetched: now}
}

func (c *appCache) get(ctx context.Context, appkey string, now time.Time) (store.App, error) {
	c.mu.Lock()
	e, ok := c.m[appkey]
	c.mu.Unlock()
	if ok && now.Sub(e.fetched) < appCacheTTL {
		return e.app, nil
	}
	a, err := c.st.App(ctx, appkey)
	if err != nil {
		return store.App{}, err
	}
	c.put(a, now)
	return a, nil
}

// App returns the app of appkey (cached briefly); the server API uses it to
// find the secret of a signed request.
func (s *Service) App(ctx context.Context, appkey string) (store.App, error) {
	return s.apps.get(ctx, appkey, s.now())
}
