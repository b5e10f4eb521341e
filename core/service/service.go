// Package service implements the IM core's stateless app services. A Service
// subscribes to buswire.ServiceSubject(cluster, op) for every request op with
// the queue group buswire.ServiceQueue, answers each buswire.Request with a
// buswire.Reply, and publishes buswire.Push messages to the subjects of the
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

	"github.com/longlink/longlink/core/ratelimit"
	"github.com/longlink/longlink/core/service/group"
	"github.com/longlink/longlink/core/service/internal/dispatch"
	"github.com/longlink/longlink/core/service/internal/node"
	"github.com/longlink/longlink/core/service/msg"
	"github.com/longlink/longlink/core/service/pushreg"
	"github.com/longlink/longlink/core/service/room"
	"github.com/longlink/longlink/core/service/session"
	"github.com/longlink/longlink/core/service/user"
	"github.com/longlink/longlink/core/store"
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
	// before a message is stored, and the message events queued for
	// delivery. Nil: no webhooks.
	Hooks msg.Hooks
	// EventLog takes the logins and logouts for the event log and the
	// app's webhook (core/push). Nil: they are not recorded.
	EventLog session.EventLog
	// Replicas of the JetStream streams the services create (the bus's
	// replica count, bus.Bus.Replicas). Default 1.
	Replicas int
	// JetStream carries super-group side work (mentions, webhook copies)
	// to durable workers. Nil: super-group sends that need it get 503.
	JetStream jetstream.JetStream
	// Offline, when set, hears of every stored message and its recipients
	// (the sender excluded) to send offline push notifications (core/push).
	Offline msg.OfflinePusher
	// Limits enforces the chatrooms' message rates. The core passes its
	// cluster-wide limiter (core/ratelimit); nil: this node's own buckets.
	Limits *ratelimit.Limiter
}

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
	cfg      Config
	n        *node.Node
	disp     *dispatch.Dispatcher
	sessions *session.Sessions
	msgs     *msg.Messages
	groups   *group.Groups
	rooms    *room.Rooms
	users    *user.Users
	push     *pushreg.Registry
	domains  []domain // in start order
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
	s, err := build(cfg, deps, log, reg, now)
	if err != nil {
		return nil, fmt.Errorf("service: %w", err)
	}
	return s, nil
}

// build makes the node's plumbing, its dispatcher and its domains, and
// registers the domains' routes.
func build(cfg Config, deps Deps, log *slog.Logger, reg prometheus.Registerer, now func() time.Time) (*Service, error) {
	nm, err := node.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	n := node.New(node.Config{PageLimit: cfg.PageLimit, DefaultPage: cfg.DefaultPage, RequestTimeout: cfg.RequestTimeout.D()},
		deps.NATS, deps.Store, log, now, nm)
	s := &Service{cfg: cfg, n: n}
	if s.disp, err = dispatch.New(dispatch.Config{
		Node: cfg.Node(), ID: cfg.ID, Announce: cfg.AnnounceInterval.D(), MaxInFlight: cfg.MaxInFlight, MaxRequestBytes: cfg.MaxRequestBytes, RequestTimeout: cfg.RequestTimeout.D(),
		MaxRequestAge: max(cfg.MaxRequestAge.D(), 0), StallAfter: max(cfg.StallTimeout.D(), 0),
		LoginQueueWait: max(cfg.LoginQueueWait.D(), 0), LoginWorkers: cfg.LoginWorkers,
	}, deps.NATS, log, reg, nm.Oversize); err != nil {
		return nil, err
	}
	scfg := session.Config{TokenTTL: cfg.TokenTTL.D()}
	if cfg.TokenKey != nil {
		if scfg.Signer, err = cfg.TokenKey.Signer(); err != nil {
			return nil, fmt.Errorf("token_key: %w", err)
		}
	}
	if s.sessions, err = session.New(n, scfg, deps.EventLog, reg); err != nil {
		return nil, err
	}
	blockBoth := map[string]bool{}
	for _, a := range cfg.Apps {
		blockBoth[a.AppKey] = a.Blacklist == BlacklistBoth
	}
	if s.msgs, err = msg.New(n, msg.Config{
		RecallWindow: cfg.RecallWindow.D(), MaxMessageBytes: cfg.MaxMessageBytes, MaxMentions: cfg.MaxMentions,
		ConvListLimit: cfg.ConvListLimit, BlockBoth: blockBoth, Super: cfg.Super, Replicas: deps.Replicas,
	}, deps.Hooks, deps.Offline, deps.JetStream, reg); err != nil {
		return nil, err
	}
	if s.groups, err = group.New(n, cfg.MaxGroupMembers, cfg.Super, reg); err != nil {
		return nil, err
	}
	limits := deps.Limits
	if limits == nil {
		// Refusals are the rooms' own counters; the limiter's would repeat them.
		if limits, err = ratelimit.New(ratelimit.Default(), ratelimit.Deps{Logger: log, Registerer: prometheus.NewRegistry(), Now: now}); err != nil {
			return nil, err
		}
	}
	if s.rooms, err = room.New(n, cfg.Rooms, cfg.MaxMessageBytes, limits, reg); err != nil {
		return nil, err
	}
	if s.users, err = user.New(n, user.Limits{MaxFriends: cfg.MaxFriends, MaxBlacklist: cfg.MaxBlacklist, MaxMutes: cfg.MaxMutes}, reg); err != nil {
		return nil, err
	}
	s.push = pushreg.New(n)
	s.domains = []domain{s.sessions, s.msgs, s.groups, s.rooms, s.users, s.push}
	for _, d := range s.domains {
		s.disp.Add(d.Routes()...)
	}
	return s, nil
}

// Ops lists the request ops this service answers.
func (s *Service) Ops() []imapi.Op { return s.disp.Ops() }

// Start seeds the configured apps, starts the domains and subscribes to
// every op's subject.
func (s *Service) Start(ctx context.Context) error {
	for _, a := range s.cfg.Apps {
		app := store.App{AppKey: a.AppKey, Secret: a.Secret.Reveal(), Devices: a.Devices, HeartbeatSec: int(a.Heartbeat.D() / time.Second)}
		if err := s.n.Store.PutApp(ctx, app); err != nil {
			return fmt.Errorf("service: seed app %s: %w", a.AppKey, err)
		}
		s.n.Apps.Put(app, s.n.Now())
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
	s.n.Log.Info("app services subscribed", "id", s.cfg.ID, "cluster", s.cfg.Cluster, "version", s.cfg.Version, "canary", s.cfg.Canary, "ops", len(s.disp.Ops()))
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
	err := s.disp.Shutdown(ctx)
	s.stopDomains(ctx, len(s.domains))
	if err != nil {
		return fmt.Errorf("service: shutdown: %w", err)
	}
	return nil
}

// The domains, for the server API and tests that call them directly.

// Sessions is the session domain (tokens, kicks).
func (s *Service) Sessions() *session.Sessions { return s.sessions }

// Messages is the message domain (sends and history as a user or as
// imapi.SystemAccount).
func (s *Service) Messages() *msg.Messages { return s.msgs }

// Rooms is the chatroom domain (the app server creates, closes and manages
// rooms).
func (s *Service) Rooms() *room.Rooms { return s.rooms }

// Users is the users-and-relations domain (profiles, friends, blacklists).
func (s *Service) Users() *user.Users { return s.users }

// Push is the push-registration domain (push tokens, do-not-disturb).
func (s *Service) Push() *pushreg.Registry { return s.push }

// Muted reports whether account muted convID (offline push stays silent
// for it); see user.Users.Muted.
func (s *Service) Muted(ctx context.Context, appkey, account, convID string) bool {
	return s.users.Muted(ctx, appkey, account, convID)
}

// MutedAmong returns which of accounts muted convID (one query); see
// user.Users.MutedAmong.
func (s *Service) MutedAmong(ctx context.Context, appkey, convID string, accounts []string) map[string]bool {
	return s.users.MutedAmong(ctx, appkey, convID, accounts)
}

// App returns the app of appkey (cached briefly); the server API uses it to
// find the secret of a signed request.
func (s *Service) App(ctx context.Context, appkey string) (store.App, error) {
	return s.n.App(ctx, appkey)
}
