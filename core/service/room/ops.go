package room

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/longlink/longlink/core/imapi"

	"github.com/longlink/longlink/core/internal/buswire"
	"github.com/longlink/longlink/core/service/internal/node"
	"github.com/longlink/longlink/core/store"
)

// --- client ops ---

// roleRank orders roles for management: an actor manages accounts of a
// lower rank only, and needs at least a manager's.
func roleRank(role string) int {
	switch role {
	case imapi.RoleOwner:
		return 3
	case imapi.RoleManager:
		return 2
	case imapi.RoleMember:
		return 1
	}
	return 0
}

// roomAccount returns the stored state of an account, or a fresh one with
// the default role.
func (s *Rooms) roomAccount(ctx context.Context, appkey, roomID, account, role string) (store.RoomAccount, error) {
	a, err := s.n.Store.RoomAccount(ctx, appkey, roomID, account)
	if errors.Is(err, store.ErrNotFound) {
		return store.RoomAccount{AppKey: appkey, RoomID: roomID, Account: account, Role: role}, nil
	}
	return a, err
}

// liveRoom loads a room that is not closed.
func (s *Rooms) liveRoom(ctx context.Context, appkey, roomID string) (store.Room, error) {
	if !imapi.ValidName(roomID) {
		return store.Room{}, imapi.Errorf(imapi.ErrBadRequest, "room_id: want 1-64 of A-Z a-z 0-9 _ -")
	}
	r, err := s.n.Store.Room(ctx, appkey, roomID)
	if err != nil {
		return store.Room{}, node.StoreErr(err, "room")
	}
	if r.Closed {
		return store.Room{}, imapi.Errorf(imapi.ErrNotFound, "room closed")
	}
	return r, nil
}

// inRoom fails unless the session has entered the room.
func (s *Rooms) inRoom(ctx context.Context, sess *buswire.Session, roomID string) error {
	if !imapi.ValidName(roomID) {
		return imapi.Errorf(imapi.ErrBadRequest, "room_id: want 1-64 of A-Z a-z 0-9 _ -")
	}
	in, err := s.n.Store.InRoom(ctx, sess.AppKey, roomID, sess.SessionID)
	if err != nil {
		return node.StoreErr(err, "room")
	}
	if !in {
		return imapi.Errorf(imapi.ErrForbidden, "not in room %s", roomID)
	}
	return nil
}

func (s *Rooms) roomEnter(ctx context.Context, sess *buswire.Session, body []byte) (any, error) {
	var req imapi.RoomEnterReq
	if err := node.Decode(body, &req); err != nil {
		return nil, err
	}
	res := "ok"
	defer func() { s.metrics.enters.WithLabelValues(res).Inc() }()
	if sess.Gateway == "" || sess.SessionID == "" {
		res = "bad_request"
		return nil, imapi.Errorf(imapi.ErrBadRequest, "rooms are entered through a gateway")
	}
	r, err := s.liveRoom(ctx, sess.AppKey, req.RoomID)
	if err != nil {
		res = "not_found"
		return nil, err
	}
	app, err := s.n.App(ctx, sess.AppKey)
	if err != nil {
		res = "error"
		return nil, node.StoreErr(err, "app")
	}
	role, ok := "", false
	if len(req.Token) <= 512 {
		role, ok = verifyRoomToken(app.Secret, req.Token, sess.AppKey, req.RoomID, sess.Account, s.n.Now())
	}
	if !ok {
		res = "bad_token"
		return nil, imapi.Errorf(imapi.ErrUnauthorized, "bad or expired room token")
	}
	acct, err := s.n.Store.RoomAccount(ctx, sess.AppKey, r.RoomID, sess.Account)
	if errors.Is(err, store.ErrNotFound) {
		// No stored role: the token's. A guest's is stored so that its sends
		// are checked (a member needs no row).
		acct, err = store.RoomAccount{AppKey: sess.AppKey, RoomID: r.RoomID, Account: sess.Account, Role: role}, nil
		if role == imapi.RoleGuest {
			err = s.n.Store.PutRoomAccount(ctx, acct)
		}
	}
	if err != nil {
		res = "error"
		return nil, node.StoreErr(err, "room")
	}
	if acct.BannedUntil > s.n.Now().UnixMilli() {
		res = "banned"
		return nil, imapi.Errorf(imapi.ErrForbidden, "banned from room %s", r.RoomID)
	}
	if err := s.n.Store.EnterRoom(ctx, store.RoomPresence{AppKey: sess.AppKey, RoomID: r.RoomID, SessionID: sess.SessionID,
		Account: sess.Account, Gateway: sess.Gateway, Entered: s.n.Now()}); err != nil {
		res = "not_found"
		return nil, node.StoreErr(err, "room")
	}
	n := s.cfg.EnterHistory
	if req.History > 0 {
		n = req.History
	}
	hist, err := s.n.Store.RoomHistory(ctx, sess.AppKey, r.RoomID, min(n, r.HistorySize))
	if err != nil {
		res = "error"
		return nil, node.StoreErr(err, "room")
	}
	members, err := s.roomSize(ctx, sess.AppKey, r.RoomID)
	if err != nil {
		res = "error"
		return nil, node.StoreErr(err, "room")
	}
	out := &imapi.RoomEnterResp{Room: *roomInfo(&r, members), Role: acct.Role, History: make([]imapi.RoomMessage, len(hist))}
	for i := range hist {
		out.History[i] = roomMsgAPI(&hist[i])
	}
	return out, nil
}

func roomMsgAPI(m *store.RoomMessage) imapi.RoomMessage {
	return imapi.RoomMessage{RoomID: m.RoomID, MsgID: m.MsgID, Seq: m.Seq, From: m.Sender, ClientMsgID: m.ClientMsgID,
		Type: m.Type, Body: m.Body, Time: m.Time}
}

// roomLeave removes the session from a room. Gateways also send it, without
// a reply subject, for every room of a session that ends.
func (s *Rooms) roomLeave(ctx context.Context, sess *buswire.Session, body []byte) (any, error) {
	var req imapi.RoomRef
	if err := node.Decode(body, &req); err != nil {
		return nil, err
	}
	if !imapi.ValidName(req.RoomID) {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "room_id: want 1-64 of A-Z a-z 0-9 _ -")
	}
	if _, err := s.n.Store.LeaveRoom(ctx, sess.AppKey, req.RoomID, sess.SessionID); err != nil {
		return nil, node.StoreErr(err, "room")
	}
	return nil, nil
}

func (s *Rooms) roomSend(ctx context.Context, sess *buswire.Session, body []byte) (any, error) {
	var req imapi.RoomSendReq
	if err := node.Decode(body, &req); err != nil {
		return nil, err
	}
	return s.Send(ctx, sess, &req)
}

// Send stores a message in the room's recent history and publishes it
// once on the room subject. The server API sends as imapi.SystemAccount, which
// needs no presence and no role.
func (s *Rooms) Send(ctx context.Context, sess *buswire.Session, req *imapi.RoomSendReq) (*imapi.RoomSendAck, error) {
	if req.ClientMsgID == "" || len(req.ClientMsgID) > 64 {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "client_msg_id: 1-64 bytes required")
	}
	if req.Type == "" {
		req.Type = "text"
	}
	if len(req.Type) > 32 {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "type: at most 32 bytes")
	}
	if len(req.Body) == 0 || string(req.Body) == "null" {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "body: required")
	}
	if len(req.Body) > s.maxMessageBytes {
		s.n.Metrics.Oversize.Inc()
		return nil, imapi.Errorf(imapi.ErrTooLarge, "body of %d bytes exceeds %d", len(req.Body), s.maxMessageBytes)
	}
	if !json.Valid(req.Body) {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "body: not JSON")
	}
	r, err := s.liveRoom(ctx, sess.AppKey, req.RoomID)
	if err != nil {
		return nil, err
	}
	now := s.n.Now()
	if sess.Account != imapi.SystemAccount {
		if err := s.inRoom(ctx, sess, r.RoomID); err != nil {
			return nil, err
		}
		a, err := s.roomAccount(ctx, sess.AppKey, r.RoomID, sess.Account, imapi.RoleMember)
		if err != nil {
			return nil, node.StoreErr(err, "room")
		}
		switch {
		case a.Role == imapi.RoleGuest && !r.GuestsCanSend:
			s.metrics.refused.WithLabelValues("guest").Inc()
			return nil, imapi.Errorf(imapi.ErrForbidden, "guests may not send in this room")
		case r.Muted && roleRank(a.Role) < roleRank(imapi.RoleManager):
			s.metrics.refused.WithLabelValues("room_muted").Inc()
			return nil, imapi.Errorf(imapi.ErrForbidden, "the room is muted")
		case a.MutedUntil > now.UnixMilli():
			s.metrics.refused.WithLabelValues("muted").Inc()
			return nil, imapi.Errorf(imapi.ErrForbidden, "muted in this room")
		}
		mr := r.MemberRate
		if mr == 0 {
			mr = s.cfg.MemberRate
		}
		if !s.limits.Allow(ctx, "room_member", sess.AppKey+"/"+r.RoomID+"/"+sess.Account, mr) {
			s.metrics.rateLimited.WithLabelValues("member").Inc()
			return nil, imapi.Errorf(imapi.ErrRateLimited, "member message rate in this room")
		}
	}
	rr := r.MsgRate
	if rr == 0 {
		rr = s.cfg.MsgRate
	}
	if !s.limits.Allow(ctx, "room", sess.AppKey+"/"+r.RoomID, rr) {
		s.metrics.rateLimited.WithLabelValues("room").Inc()
		return nil, imapi.Errorf(imapi.ErrRateLimited, "room message rate")
	}
	m := &store.RoomMessage{AppKey: sess.AppKey, RoomID: r.RoomID, MsgID: node.NewID(now), Sender: sess.Account,
		ClientMsgID: req.ClientMsgID, Type: req.Type, Body: req.Body, Time: now.UnixMilli()}
	if err := s.n.Store.AppendRoomMessage(ctx, m); err != nil {
		return nil, node.StoreErr(err, "room")
	}
	b, err := json.Marshal(roomMsgAPI(m))
	if err != nil {
		return nil, fmt.Errorf("encode room message: %w", err)
	}
	if err := s.n.NATS.Publish(buswire.RoomSubject(sess.AppKey, r.RoomID)+buswire.RoomMessageSuffix, b); err != nil {
		s.n.Metrics.PushErrors.Inc()
		return nil, imapi.Errorf(imapi.ErrUnavailable, "publish: %v", err)
	}
	s.metrics.messages.Inc()
	return &imapi.RoomSendAck{MsgID: m.MsgID, Seq: m.Seq, Time: m.Time}, nil
}

func (s *Rooms) roomMembers(ctx context.Context, sess *buswire.Session, body []byte) (any, error) {
	var req imapi.RoomMembersReq
	if err := node.Decode(body, &req); err != nil {
		return nil, err
	}
	if err := s.inRoom(ctx, sess, req.RoomID); err != nil {
		return nil, err
	}
	return s.Members(ctx, sess.AppKey, &req)
}

func (s *Rooms) roomHistory(ctx context.Context, sess *buswire.Session, body []byte) (any, error) {
	var req imapi.RoomHistoryReq
	if err := node.Decode(body, &req); err != nil {
		return nil, err
	}
	if err := s.inRoom(ctx, sess, req.RoomID); err != nil {
		return nil, err
	}
	r, err := s.liveRoom(ctx, sess.AppKey, req.RoomID)
	if err != nil {
		return nil, err
	}
	n := req.Limit
	if n <= 0 {
		n = s.cfg.EnterHistory
	}
	hist, err := s.n.Store.RoomHistory(ctx, sess.AppKey, r.RoomID, min(n, r.HistorySize))
	if err != nil {
		return nil, node.StoreErr(err, "room")
	}
	out := &imapi.RoomHistoryResp{Messages: make([]imapi.RoomMessage, len(hist))}
	for i := range hist {
		out.Messages[i] = roomMsgAPI(&hist[i])
	}
	return out, nil
}

func (s *Rooms) roomInfo(ctx context.Context, sess *buswire.Session, body []byte) (any, error) {
	var req imapi.RoomRef
	if err := node.Decode(body, &req); err != nil {
		return nil, err
	}
	if err := s.inRoom(ctx, sess, req.RoomID); err != nil {
		return nil, err
	}
	return s.Info(ctx, sess.AppKey, req.RoomID)
}

// manage loads the room and the actor's and target's states and checks
// that the actor may manage the target.
func (s *Rooms) manage(ctx context.Context, sess *buswire.Session, roomID, target string) (store.Room, store.RoomAccount, store.RoomAccount, error) {
	var none store.RoomAccount
	r, err := s.liveRoom(ctx, sess.AppKey, roomID)
	if err != nil {
		return r, none, none, err
	}
	actor, err := s.roomAccount(ctx, sess.AppKey, roomID, sess.Account, imapi.RoleMember)
	if err != nil {
		return r, none, none, node.StoreErr(err, "room")
	}
	if roleRank(actor.Role) < roleRank(imapi.RoleManager) {
		return r, none, none, imapi.Errorf(imapi.ErrForbidden, "only the owner and managers manage room %s", roomID)
	}
	if target == "" {
		return r, actor, none, nil
	}
	if !imapi.ValidName(target) {
		return r, none, none, imapi.Errorf(imapi.ErrBadRequest, "account: want 1-64 of A-Z a-z 0-9 _ -")
	}
	t, err := s.roomAccount(ctx, sess.AppKey, roomID, target, imapi.RoleMember)
	if err != nil {
		return r, none, none, node.StoreErr(err, "room")
	}
	if roleRank(t.Role) >= roleRank(actor.Role) {
		return r, none, none, imapi.Errorf(imapi.ErrForbidden, "%s may not manage %s (%s)", actor.Role, target, t.Role)
	}
	return r, actor, t, nil
}

func (s *Rooms) roomSetRole(ctx context.Context, sess *buswire.Session, body []byte) (any, error) {
	var req imapi.RoomRoleReq
	if err := node.Decode(body, &req); err != nil {
		return nil, err
	}
	switch req.Role {
	case imapi.RoleManager, imapi.RoleMember, imapi.RoleGuest:
	default:
		return nil, imapi.Errorf(imapi.ErrBadRequest, "role: manager, member or guest")
	}
	_, actor, t, err := s.manage(ctx, sess, req.RoomID, req.Account)
	if err != nil {
		return nil, err
	}
	if actor.Role != imapi.RoleOwner {
		return nil, imapi.Errorf(imapi.ErrForbidden, "only the owner sets roles")
	}
	t.Role = req.Role
	if err := s.n.Store.PutRoomAccount(ctx, t); err != nil {
		return nil, node.StoreErr(err, "room")
	}
	s.roomEvent(sess.AppKey, &imapi.RoomEvent{RoomID: req.RoomID, Kind: imapi.RoomEventRole, Account: req.Account, Role: req.Role, By: sess.Account})
	return nil, nil
}

// forever is the "until unmuted" mute time (unix milliseconds).
const forever = int64(1) << 62

func (s *Rooms) roomMute(ctx context.Context, sess *buswire.Session, body []byte) (any, error) {
	var req imapi.RoomMuteReq
	if err := node.Decode(body, &req); err != nil {
		return nil, err
	}
	if req.DurationSec < 0 {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "duration_sec: must not be negative")
	}
	_, _, t, err := s.manage(ctx, sess, req.RoomID, req.Account)
	if err != nil {
		return nil, err
	}
	return nil, s.applyMute(ctx, sess.AppKey, &req, t, sess.Account)
}

// Mute is room.mute for the app's server (acting as by, usually
// imapi.SystemAccount): it may mute any account of a live room, the owner and
// managers included, or the whole room when req.Account is empty.
func (s *Rooms) Mute(ctx context.Context, appkey string, req *imapi.RoomMuteReq, by string) error {
	if req.DurationSec < 0 {
		return imapi.Errorf(imapi.ErrBadRequest, "duration_sec: must not be negative")
	}
	t, err := s.roomTarget(ctx, appkey, req.RoomID, req.Account)
	if err != nil {
		return err
	}
	return s.applyMute(ctx, appkey, req, t, by)
}

// roomTarget loads a live room's account for the app's server, which
// needs no role ("" account: none).
func (s *Rooms) roomTarget(ctx context.Context, appkey, roomID, account string) (store.RoomAccount, error) {
	if _, err := s.liveRoom(ctx, appkey, roomID); err != nil {
		return store.RoomAccount{}, err
	}
	if account == "" {
		return store.RoomAccount{}, nil
	}
	if !imapi.ValidName(account) {
		return store.RoomAccount{}, imapi.Errorf(imapi.ErrBadRequest, "account: want 1-64 of A-Z a-z 0-9 _ -")
	}
	t, err := s.roomAccount(ctx, appkey, roomID, account, imapi.RoleMember)
	if err != nil {
		return t, node.StoreErr(err, "room")
	}
	return t, nil
}

func (s *Rooms) applyMute(ctx context.Context, appkey string, req *imapi.RoomMuteReq, t store.RoomAccount, by string) error {
	ev := &imapi.RoomEvent{RoomID: req.RoomID, By: by}
	if req.Account == "" {
		if err := s.n.Store.SetRoomMuted(ctx, appkey, req.RoomID, req.Muted); err != nil {
			return node.StoreErr(err, "room")
		}
		ev.Kind = imapi.RoomEventRoomUnmuted
		if req.Muted {
			ev.Kind = imapi.RoomEventRoomMuted
		}
	} else {
		t.MutedUntil, ev.Kind, ev.Account = 0, imapi.RoomEventUnmuted, req.Account
		if req.Muted {
			t.MutedUntil, ev.Kind = forever, imapi.RoomEventMuted
			if req.DurationSec > 0 {
				t.MutedUntil = s.n.Now().Add(time.Duration(req.DurationSec) * time.Second).UnixMilli()
				ev.Until = t.MutedUntil
			}
		}
		if err := s.n.Store.PutRoomAccount(ctx, t); err != nil {
			return node.StoreErr(err, "room")
		}
	}
	s.roomEvent(appkey, ev)
	return nil
}

func (s *Rooms) roomKick(ctx context.Context, sess *buswire.Session, body []byte) (any, error) {
	var req imapi.RoomKickReq
	if err := node.Decode(body, &req); err != nil {
		return nil, err
	}
	if err := validKick(&req); err != nil {
		return nil, err
	}
	_, _, t, err := s.manage(ctx, sess, req.RoomID, req.Account)
	if err != nil {
		return nil, err
	}
	return nil, s.applyKick(ctx, sess.AppKey, &req, t, sess.Account)
}

// Kick is room.kick for the app's server (acting as by, usually
// imapi.SystemAccount): it may kick any account of a live room.
func (s *Rooms) Kick(ctx context.Context, appkey string, req *imapi.RoomKickReq, by string) error {
	if err := validKick(req); err != nil {
		return err
	}
	t, err := s.roomTarget(ctx, appkey, req.RoomID, req.Account)
	if err != nil {
		return err
	}
	return s.applyKick(ctx, appkey, req, t, by)
}

func validKick(req *imapi.RoomKickReq) error {
	if req.Account == "" || req.BanSec < 0 || len(req.Reason) > 256 {
		return imapi.Errorf(imapi.ErrBadRequest, "account required, ban_sec not negative, reason at most 256 bytes")
	}
	return nil
}

func (s *Rooms) applyKick(ctx context.Context, appkey string, req *imapi.RoomKickReq, t store.RoomAccount, by string) error {
	ev := &imapi.RoomEvent{RoomID: req.RoomID, Kind: imapi.RoomEventKicked, Account: req.Account, By: by, Reason: req.Reason}
	if req.BanSec > 0 {
		t.BannedUntil = s.n.Now().Add(time.Duration(req.BanSec) * time.Second).UnixMilli()
		ev.Until = t.BannedUntil
		if err := s.n.Store.PutRoomAccount(ctx, t); err != nil {
			return node.StoreErr(err, "room")
		}
	}
	if _, err := s.n.Store.RemoveRoomAccount(ctx, appkey, req.RoomID, req.Account); err != nil {
		return node.StoreErr(err, "room")
	}
	s.metrics.kicks.Inc()
	s.roomEvent(appkey, ev)
	return nil
}

func (s *Rooms) roomClose(ctx context.Context, sess *buswire.Session, body []byte) (any, error) {
	var req imapi.RoomRef
	if err := node.Decode(body, &req); err != nil {
		return nil, err
	}
	r, err := s.liveRoom(ctx, sess.AppKey, req.RoomID)
	if err != nil {
		return nil, err
	}
	if r.Owner != sess.Account {
		return nil, imapi.Errorf(imapi.ErrForbidden, "only the owner closes room %s", req.RoomID)
	}
	return nil, s.Close(ctx, sess.AppKey, req.RoomID, sess.Account)
}

// roomEvent publishes an event on the room's event subject: every gateway
// holding members delivers it to them (and acts on kicks and closes).
func (s *Rooms) roomEvent(appkey string, ev *imapi.RoomEvent) {
	b, _ := json.Marshal(ev)
	if err := s.n.NATS.Publish(buswire.RoomSubject(appkey, ev.RoomID)+buswire.RoomEventSuffix, b); err != nil {
		s.n.Metrics.PushErrors.Inc()
		s.n.Log.Warn("room event not published", "room", ev.RoomID, "kind", ev.Kind, "err", err)
		return
	}
	s.metrics.events.WithLabelValues(ev.Kind).Inc()
}
