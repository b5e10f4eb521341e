// Package service implements the IM core's stateless app services. A Service
// subscribes to imapi.ServiceSubject(cluster, op) for every request op with
// the queue group imapi.ServiceQueue, answers each imapi.BusRequest with an
// imapi.BusReply, and publishes imapi.BusPush messages to the subjects of the
// accounts concerned. Any number of nodes can run side by side on one bus.
package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/logintoken"
	"github.com/longlink/longlink/core/service/group"
	"github.com/longlink/longlink/core/service/internal/dispatch"
	"github.com/longlink/longlink/core/service/internal/node"
	"github.com/longlink/longlink/core/service/msg"
	"github.com/longlink/longlink/core/service/room"
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

// domain is one group of ops with its own state and life: the dispatcher
// serves its routes; Start runs before the node subscribes, Stop after it
// has drained.
type domain interface {
	Routes() []dispatch.Route
	Start(ctx context.Context) error
	Stop(ctx context.Context)
}

// Service is one app service node: the dispatcher and the domains on it.
type Service struct {
	cfg     Config
	n       *node.Node
	nc      *nats.Conn
	st      store.Store
	log     *slog.Logger
	metrics *metrics
	now     func() time.Time
	hooks   Hooks
	signer  *logintoken.Signer // nil: opaque tokens

	disp    *dispatch.Dispatcher
	rooms   *room.Rooms
	msgs    *msg.Messages
	domains []domain // in start order
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
	log := logging.OrDiscard(deps.Logger).With("component", "service")
	reg := deps.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	now := deps.Now
	if now == nil {
		now = time.Now
	}
	nm, err := node.NewMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("service: %w", err)
	}
	n := node.New(node.Config{PageLimit: cfg.PageLimit, DefaultPage: cfg.DefaultPage, RequestTimeout: cfg.RequestTimeout.D()},
		deps.NATS, deps.Store, log, now, nm)
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("service: %w", err)
	}
	s := &Service{
		cfg: cfg, n: n, nc: deps.NATS, st: deps.Store, log: log,
		metrics: m, now: now, hooks: deps.Hooks,
	}
	s.disp, err = dispatch.New(dispatch.Config{
		Cluster: cfg.Cluster, MaxInFlight: cfg.MaxInFlight, MaxRequestBytes: cfg.MaxRequestBytes, RequestTimeout: cfg.RequestTimeout.D(),
	}, deps.NATS, log, reg, nm.Oversize)
	if err != nil {
		return nil, fmt.Errorf("service: %w", err)
	}
	if cfg.TokenKey != nil {
		if s.signer, err = cfg.TokenKey.Signer(); err != nil {
			return nil, fmt.Errorf("service: token_key: %w", err)
		}
	}
	if s.rooms, err = room.New(n, cfg.Rooms, cfg.MaxMessageBytes, reg); err != nil {
		return nil, fmt.Errorf("service: %w", err)
	}
	groups, err := group.New(n, cfg.MaxGroupMembers, cfg.Super, reg)
	if err != nil {
		return nil, fmt.Errorf("service: %w", err)
	}
	blockBoth := map[string]bool{}
	for _, a := range cfg.Apps {
		blockBoth[a.AppKey] = a.Blacklist == BlacklistBoth
	}
	mcfg := msg.Config{
		RecallWindow: cfg.RecallWindow.D(), MaxMessageBytes: cfg.MaxMessageBytes, MaxMentions: cfg.MaxMentions,
		ConvListLimit: cfg.ConvListLimit, BlockBoth: blockBoth, Super: cfg.Super,
	}
	var hooks msg.Hooks
	if deps.Hooks != nil {
		hooks = deps.Hooks
	}
	var offline msg.OfflinePusher
	if deps.Offline != nil {
		offline = deps.Offline
	}
	if s.msgs, err = msg.New(n, mcfg, hooks, offline, deps.JetStream, reg); err != nil {
		return nil, fmt.Errorf("service: %w", err)
	}
	s.domains = []domain{s.rooms, groups, s.msgs}
	for _, d := range s.domains {
		s.disp.Add(d.Routes()...)
	}
	for op, h := range map[imapi.Op]handler{
		imapi.OpLogin:           s.login,
		imapi.OpHeartbeat:       s.heartbeat,
		imapi.OpLogout:          s.logout,
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

// Messages is the message domain (the server API sends and reads history
// through it).
func (s *Service) Messages() *msg.Messages { return s.msgs }

// Rooms is the chatroom domain (the server API creates, closes and
// manages rooms through it).
func (s *Service) Rooms() *room.Rooms { return s.rooms }

// Start seeds the configured apps, starts the domains and subscribes to
// every op's subject.
func (s *Service) Start(ctx context.Context) error {
	for _, a := range s.cfg.Apps {
		app := store.App{AppKey: a.AppKey, Secret: a.Secret.Reveal(), Devices: a.Devices, HeartbeatSec: int(a.Heartbeat.D() / time.Second)}
		if err := s.st.PutApp(ctx, app); err != nil {
			return fmt.Errorf("service: seed app %s: %w", a.AppKey, err)
		}
		s.n.Apps.Put(app, s.now())
	}
	for i, d := range s.domains {
		if err := d.Start(ctx); err != nil {
			s.stopDomains(ctx, i)
			return fmt.Errorf("service: %w", err)
		}
	}
	if err := s.disp.Start(ctx); err != nil {
		s.stopDomains(ctx, len(s.domains))
		return fmt.Errorf("service: %w", err)
	}
	s.log.Info("app services subscribed", "cluster", s.cfg.Cluster, "ops", len(s.disp.Ops()))
	return nil
}

// stopDomains stops the first n domains, in reverse order.
func (s *Service) stopDomains(ctx context.Context, n int) {
	for i := n - 1; i >= 0; i-- {
		s.domains[i].Stop(ctx)
	}
}

// Shutdown stops taking requests (the queue group sends new ones to other
// nodes), lets the buffered ones finish, waits for in-flight handlers and
// stops the domains.
func (s *Service) Shutdown(ctx context.Context) error {
	if err := s.disp.Shutdown(ctx); err != nil {
		return fmt.Errorf("service: shutdown: %w", err)
	}
	s.stopDomains(ctx, len(s.domains))
	return nil
}

// App returns the app of appkey (cached briefly); the server API uses it to
// find the secret of a signed request.
func (s *Service) App(ctx context.Context, appkey string) (store.App, error) {
	return s.n.App(ctx, appkey)
}
