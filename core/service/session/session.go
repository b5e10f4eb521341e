// Package session is the session domain of the app services: login
// (tokens, the app's multi-device policy, the account's super-groups for
// its gateway), heartbeat and logout, the login and logout event log, and
// the tokens the server API issues and revokes.
package session

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/longlink/longlink/core/imapi"

	"github.com/longlink/longlink/core/internal/buswire"
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

// EventLog takes the logins and logouts for the event log and the app's
// webhook (core/push.Push.RecordSession). It must not block the login:
// it queues the entry, retries what fails and counts what it sheds.
type EventLog interface {
	RecordSession(kind, reason string, at time.Time, s buswire.Session)
}

// Sessions serves login, heartbeat and logout, and the server API's token
// calls.
type Sessions struct {
	n       *node.Node
	cfg     Config
	events  EventLog // nil: logins and logouts are not recorded
	metrics *metrics
}

// New builds the session domain.
func New(n *node.Node, cfg Config, events EventLog, reg prometheus.Registerer) (*Sessions, error) {
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &Sessions{n: n, cfg: cfg, events: events, metrics: m}, nil
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

func (s *Sessions) login(ctx context.Context, sess *buswire.Session, body []byte) (any, error) {
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
		return nil, loginStoreErr(err, "app")
	}
	u, err := s.n.Store.User(ctx, req.AppKey, req.Account)
	if errors.Is(err, store.ErrNotFound) {
		return nil, imapi.Errorf(imapi.ErrUnauthorized, "")
	} else if err != nil {
		return nil, loginStoreErr(err, "user")
	}
	ok, err := s.n.Store.CheckToken(ctx, req.AppKey, req.Account, HashToken(req.Token), now)
	if err != nil {
		return nil, loginStoreErr(err, "token")
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
		return nil, loginStoreErr(err, "super-groups")
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
		pb, _ := json.Marshal(&buswire.Push{Op: imapi.OpKick, Body: kb, KickDeviceType: kickType, ExceptSession: sid})
		if err := s.n.NATS.Publish(buswire.UserSubject(req.AppKey, req.Account), pb); err != nil {
			s.n.Metrics.PushErrors.Inc()
			s.n.Log.Warn("kick push failed", "err", err)
		} else {
			s.metrics.kicks.Inc()
		}
	}
	s.record(webhook.KindLogin, "", buswire.Session{
		AppKey: req.AppKey, Account: req.Account, DeviceID: req.DeviceID, DeviceType: deviceType,
		SessionID: sid, Gateway: sess.Gateway, ClientIP: sess.ClientIP, SDK: req.SDKVersion,
	})
	return &buswire.LoginReply{
		LoginResp:   imapi.LoginResp{SessionID: sid, ServerTime: now.UnixMilli(), HeartbeatSec: app.HeartbeatSec},
		SuperGroups: supers,
	}, nil
}

// LoginRetry is the least retry hint of a login refused because the store
// could not be reached. The client tries again with a new connection and
// Noise handshake (about 0.5 ms of the gateway's CPU), so thousands of
// clients at the store's own finer hint (connect_retry) would load the
// gateway more than the store's quick recovery gains them.
const LoginRetry = time.Second

// loginStoreErr is node.StoreErr whose retry hint, if it has one, is spread
// over [LoginRetry, 2·LoginRetry): the clients of a lost site are refused
// together and would come back together (the SDK adds at most a quarter).
func loginStoreErr(err error, what string) error {
	err = node.StoreErr(err, what)
	var ie *imapi.Error
	if errors.As(err, &ie) && ie.RetryAfterMs > 0 {
		ms := LoginRetry.Milliseconds()
		ie.RetryAfterMs = max(ie.RetryAfterMs, ms+rand.Int64N(ms))
	}
	return err
}

func (s *Sessions) heartbeat(context.Context, *buswire.Session, []byte) (any, error) { return nil, nil }

func (s *Sessions) logout(_ context.Context, sess *buswire.Session, _ []byte) (any, error) {
	s.record(webhook.KindLogout, "logout requested by the client", *sess)
	return nil, nil
}

// KickAll closes every session of an account (a disabled user, a revoked
// token). It is a push: gateways holding the sessions close them.
func (s *Sessions) KickAll(appkey, account, reason string) {
	kb, _ := json.Marshal(&imapi.Kick{Code: imapi.ErrKicked, Reason: reason})
	pb, _ := json.Marshal(&buswire.Push{Op: imapi.OpKick, Body: kb, KickDeviceType: "*"})
	if err := s.n.NATS.Publish(buswire.UserSubject(appkey, account), pb); err != nil {
		s.n.Metrics.PushErrors.Inc()
		s.n.Log.Warn("kick push failed", "err", err)
		return
	}
	s.metrics.kicks.Inc()
}

// record hands a login or logout to the event log. The request does not
// wait for it: in a reconnect storm the store is the busiest part, and an
// entry written in the request failed with it (the log lost thousands).
func (s *Sessions) record(kind webhook.Kind, reason string, sess buswire.Session) {
	if s.events != nil {
		s.events.RecordSession(string(kind), reason, s.n.Now(), sess)
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
