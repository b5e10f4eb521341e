package service

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/service/internal/node"
	"github.com/longlink/longlink/core/store"
	"github.com/longlink/longlink/core/webhook"
)

func (s *Service) login(ctx context.Context, sess *imapi.Session, body []byte) (any, error) {
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
	now := s.now()
	app, err := s.n.App(ctx, req.AppKey)
	if errors.Is(err, store.ErrNotFound) {
		return nil, imapi.Errorf(imapi.ErrUnauthorized, "")
	} else if err != nil {
		return nil, node.StoreErr(err, "app")
	}
	u, err := s.st.User(ctx, req.AppKey, req.Account)
	if errors.Is(err, store.ErrNotFound) {
		return nil, imapi.Errorf(imapi.ErrUnauthorized, "")
	} else if err != nil {
		return nil, node.StoreErr(err, "user")
	}
	ok, err := s.st.CheckToken(ctx, req.AppKey, req.Account, HashToken(req.Token), now)
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
		if err := s.nc.Publish(imapi.UserSubject(req.AppKey, req.Account), pb); err != nil {
			s.n.Metrics.PushErrors.Inc()
			s.log.Warn("kick push failed", "err", err)
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

func (s *Service) heartbeat(context.Context, *imapi.Session, []byte) (any, error) { return nil, nil }

func (s *Service) logout(ctx context.Context, sess *imapi.Session, _ []byte) (any, error) {
	s.recordSession(ctx, webhook.KindLogout, sess, "logout requested by the client")
	return nil, nil
}

// KickAll closes every session of an account (a disabled user, a revoked
// token). It is a push: gateways holding the sessions close them.
func (s *Service) KickAll(appkey, account, reason string) {
	kb, _ := json.Marshal(&imapi.Kick{Code: imapi.ErrKicked, Reason: reason})
	pb, _ := json.Marshal(&imapi.BusPush{Op: imapi.OpKick, Body: kb, KickDeviceType: "*"})
	if err := s.nc.Publish(imapi.UserSubject(appkey, account), pb); err != nil {
		s.n.Metrics.PushErrors.Inc()
		s.log.Warn("kick push failed", "err", err)
		return
	}
	s.metrics.kicks.Inc()
}

// recordSession writes a login or logout to the event log and queues it
// for the app's webhook (with the event log's id as the event id). Neither
// fails the request: a lost entry is logged and counted.
func (s *Service) recordSession(ctx context.Context, kind webhook.Kind, sess *imapi.Session, reason string) {
	now := s.now()
	id := node.NewID(now)
	if err := s.st.AppendEvents(ctx, []store.SessionEvent{{
		AppKey: sess.AppKey, ID: id, Account: sess.Account, Kind: string(kind), Time: now.UnixMilli(),
		DeviceID: sess.DeviceID, DeviceType: sess.DeviceType, ClientIP: sess.ClientIP, SDK: sess.SDK,
		SessionID: sess.SessionID, Gateway: sess.Gateway, Reason: reason,
	}}); err != nil {
		s.metrics.eventLogErrors.Inc()
		s.log.Warn("event log write failed", "appkey", sess.AppKey, "kind", kind, "err", err)
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
		s.log.Warn("webhook session event not queued", "appkey", sess.AppKey, "kind", kind, "err", err)
	}
}

// superGroupsAtLogin lists the account's super-groups for its gateway.
func (s *Service) superGroupsAtLogin(ctx context.Context, appkey, account string) ([]string, error) {
	gs, err := s.st.SuperGroupsOf(ctx, appkey, account)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(gs))
	for i := range gs {
		out[i] = gs[i].GroupID
	}
	return out, nil
}
