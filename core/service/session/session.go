// Package session is the session domain of the app services: login
// (tokens, the app's multi-device policy, the account's super-groups for
// its gateway), heartbeat and logout, the login and logout event log, and
// the tokens the server API issues and revokes.
package session

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/logintoken"
	"github.com/longlink/longlink/core/service/internal/dispatch"
	"github.com/longlink/longlink/core/service/internal/node"
	"github.com/longlink/longlink/core/store"
	"github.com/longlink/longlink/core/webhook"
)

// Config tunes the session domain.
type Config struct {
	// TokenTTL is the lifetime of issued tokens.
	TokenTTL time.Duration
	// Signer signs issued tokens (nil: opaque tokens).
	Signer *logintoken.Signer
}

// Hooks is what sessions need of core/webhook: the login and logout events
// queued for the app.
type Hooks interface {
	Publish(ctx context.Context, appkey string, ev webhook.Event) error
}

// Sessions serves login, heartbeat and logout, and the server API's token
// calls.
type Sessions struct {
	n       *node.Node
	cfg     Config
	hooks   Hooks // nil: no webhooks
	metrics *metrics
}

// New builds the session domain.
func New(n *node.Node, cfg Config, hooks Hooks, reg prometheus.Registerer) (*Sessions, error) {
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &Sessions{n: n, cfg: cfg, hooks: hooks, metrics: m}, nil
}

// Routes are the session ops.
func (s *Sessions) Routes() []dispatch.Route {
	return []dispatch.Route{
		{Op: imapi.OpLogin, Handle: s.login},
		{Op: imapi.OpHeartbeat, Handle: s.heartbeat},
		{Op: imapi.OpLogout, Handle: s.logout},
	}
}

// Start has nothing to start.
func (s *Sessions) Start(context.Context) error { return nil }

// Stop has nothing to stop.
func (s *Sessions) Stop(context.Context) {}

func (s *Sessions) login(ctx context.Context, sess *imapi.Session, body []byte) (any, error) {
	var req imapi.LoginReq
	if err := node.Decode(body, &req); err != nil {
		return nil, err
	}
	if !imapi.ValidName(req.AppKey) || !imapi.ValidName(req.Account) || req.Token == "" || len(req.Token) > maxTokenLen {
		return nil, imapi.Errorf(imapi.ErrUnauthorized, "")
	}
	if len(req.DeviceType) > 32 || len(req.DeviceID) > 128 || len(req.SDKVersion) > 64 {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "device or sdk field too long")
	}
	// A session id in the request was chosen by an edge that already
	// answered the client (the gateway passes it on only from its
	// pre-terminated listener); it must look like ours.
	if req.SessionID != "" && !validSessionID(req.SessionID) {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "session_id: want 32 lowercase hex characters")
	}
	now := s.n.Now()
	app, err := s.n.App(ctx, req.AppKey)
	if errors.Is(err, store.ErrNotFound) {
		return nil, imapi.Errorf(imapi.ErrUnauthorized, "")
	} else if err != nil {
		return nil, node.StoreErr(err, "app")
	}
	u, err := s.n.Store.User(ctx, req.AppKey, req.Account)
	if errors.Is(err, store.ErrNotFound) {
		return nil, imapi.Errorf(imapi.ErrUnauthorized, "")
	} else if err != nil {
		return nil, node.StoreErr(err, "user")
	}
	ok, err := s.n.Store.CheckToken(ctx, req.AppKey, req.Account, HashToken(req.Token), now)
	if err != nil {
		return nil, node.StoreErr(err, "token")
	}
	if !ok {
		return nil, imapi.Errorf(imapi.ErrUnauthorized, "")
	}
	// Disabled is checked after the token so that it reveals nothing to
	// someone who does not hold a valid token.
	if u.Disabled {
		return nil, imapi.Errorf(imapi.ErrUserDisabled, "")
	}
	supers, err := s.superGroupsAtLogin(ctx, req.AppKey, req.Account)
	if err != nil {
		return nil, node.StoreErr(err, "super-groups")
	}
	sid := req.SessionID
	if sid == "" {
		sid = newSessionID()
	}
	deviceType := req.DeviceType
	if deviceType == "" {
		deviceType = "unknown"
	}
	kickType := ""
	switch app.Devices {
	case imapi.DevicesKickSameType:
		kickType = deviceType
	case imapi.DevicesSingle:
		kickType = "*"
	}
	if kickType != "" {
		kb, _ := json.Marshal(&imapi.Kick{Code: imapi.ErrKicked, Reason: "logged in on another device", By: deviceType})
		pb, _ := json.Marshal(&imapi.BusPush{Op: imapi.OpKick, Body: kb, KickDeviceType: kickType, ExceptSession: sid})
		if err := s.n.NATS.Publish(imapi.UserSubject(req.AppKey, req.Account), pb); err != nil {
			s.n.Metrics.PushErrors.Inc()
			s.n.Log.Warn("kick push failed", "err", err)
		} else {
			s.metrics.kicks.Inc()
		}
	}
	s.recordSession(ctx, webhook.KindLogin, &imapi.Session{
		AppKey: req.AppKey, Account: req.Account, DeviceID: req.DeviceID, DeviceType: deviceType,
		SessionID: sid, Gateway: sess.Gateway, ClientIP: sess.ClientIP, SDK: req.SDKVersion,
	}, "")
	return &imapi.LoginResp{SessionID: sid, ServerTime: now.UnixMilli(), HeartbeatSec: app.HeartbeatSec, SuperGroups: supers}, nil
}

func (s *Sessions) heartbeat(context.Context, *imapi.Session, []byte) (any, error) { return nil, nil }

func (s *Sessions) logout(ctx context.Context, sess *imapi.Session, _ []byte) (any, error) {
	s.recordSession(ctx, webhook.KindLogout, sess, "logout requested by the client")
	return nil, nil
}

// KickAll closes every session of an account (a disabled user, a revoked
// token). It is a push: gateways holding the sessions close them.
func (s *Sessions) KickAll(appkey, account, reason string) {
	kb, _ := json.Marshal(&imapi.Kick{Code: imapi.ErrKicked, Reason: reason})
	pb, _ := json.Marshal(&imapi.BusPush{Op: imapi.OpKick, Body: kb, KickDeviceType: "*"})
	if err := s.n.NATS.Publish(imapi.UserSubject(appkey, account), pb); err != nil {
		s.n.Metrics.PushErrors.Inc()
		s.n.Log.Warn("kick push failed", "err", err)
		return
	}
	s.metrics.kicks.Inc()
}

// recordSession writes a login or logout to the event log and queues it
// for the app's webhook (with the event log's id as the event id). Neither
// fails the request: a lost entry is logged and counted.
func (s *Sessions) recordSession(ctx context.Context, kind webhook.Kind, sess *imapi.Session, reason string) {
	now := s.n.Now()
	id := node.NewID(now)
	if err := s.n.Store.AppendEvents(ctx, []store.SessionEvent{{
		AppKey: sess.AppKey, ID: id, Account: sess.Account, Kind: string(kind), Time: now.UnixMilli(),
		DeviceID: sess.DeviceID, DeviceType: sess.DeviceType, ClientIP: sess.ClientIP, SDK: sess.SDK,
		SessionID: sess.SessionID, Gateway: sess.Gateway, Reason: reason,
	}}); err != nil {
		s.metrics.eventLogErrors.Inc()
		s.n.Log.Warn("event log write failed", "appkey", sess.AppKey, "kind", kind, "err", err)
	}
	if s.hooks == nil {
		return
	}
	ev, err := webhook.SessionEvent(kind, sess, reason, now)
	ev.ID = id
	if err == nil {
		err = s.hooks.Publish(ctx, sess.AppKey, ev)
	}
	if err != nil {
		s.n.Metrics.HookErrors.Inc()
		s.n.Log.Warn("webhook session event not queued", "appkey", sess.AppKey, "kind", kind, "err", err)
	}
}

// superGroupsAtLogin lists the account's super-groups for its gateway.
func (s *Sessions) superGroupsAtLogin(ctx context.Context, appkey, account string) ([]string, error) {
	gs, err := s.n.Store.SuperGroupsOf(ctx, appkey, account)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(gs))
	for i := range gs {
		out[i] = gs[i].GroupID
	}
	return out, nil
}

// IssueToken creates a token for an existing account, valid for the
// configured TokenTTL; revokeOthers invalidates the account's other tokens.
// With a token key the token is signed (edges can verify it); it is stored
// hashed either way, so revocation works the same.
func (s *Sessions) IssueToken(ctx context.Context, appkey, account string, revokeOthers bool) (string, time.Time, error) {
	// Whole seconds: the signed token carries its expiry in seconds, and the
	// store must not outlive it.
	exp := s.n.Now().Add(s.cfg.TokenTTL).Truncate(time.Second)
	tok := NewToken()
	if s.cfg.Signer != nil {
		var err error
		if tok, err = s.cfg.Signer.Issue(appkey, account, exp); err != nil {
			return "", time.Time{}, err
		}
	}
	if err := s.n.Store.PutToken(ctx, appkey, account, HashToken(tok), exp, revokeOthers); err != nil {
		return "", time.Time{}, err
	}
	return tok, exp, nil
}
