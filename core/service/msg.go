package service

import (
	"context"
	"encoding/json"
	"slices"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/service/internal/dispatch"
	"github.com/longlink/longlink/core/service/internal/node"
	"github.com/longlink/longlink/core/store"
	"github.com/longlink/longlink/core/webhook"
)

func (s *Service) send(ctx context.Context, sess *imapi.Session, body []byte) (any, error) {
	var req imapi.SendReq
	if len(body) == 0 {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "empty body")
	}
	if err := imapi.DecodeSendReq(body, &req); err != nil {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "body: %v", err)
	}
	return s.Send(ctx, sess, &req)
}

// Send stores a message from sess.Account durably, then pushes it to the
// conversation's members (the sender's other sessions included). The server
// API calls it directly to send as a user or as imapi.SystemAccount.
func (s *Service) Send(ctx context.Context, sess *imapi.Session, req *imapi.SendReq) (*imapi.SendAck, error) {
	if err := s.validateSend(req); err != nil {
		return nil, err
	}
	if req.ConvType == imapi.ConvSuper {
		return s.sendSuper(ctx, sess, req)
	}
	now := s.now()
	a := &store.Append{Message: store.Message{
		AppKey: sess.AppKey, ConvType: req.ConvType, MsgID: node.NewID(now), Sender: sess.Account,
		SenderDevice: sess.DeviceType, To: req.To, ClientMsgID: req.ClientMsgID, Type: req.Type,
		Body: req.Body, Mentions: req.Mentions, Time: now.UnixMilli(),
	}}
	what := "recipient"
	switch req.ConvType {
	case imapi.ConvP2P:
		a.ConvID = imapi.P2PConvID(sess.Account, req.To)
		a.Peer = req.To
		a.BlockMode = s.blockMode(sess.AppKey)
	case imapi.ConvGroup:
		if sess.Account == imapi.SystemAccount {
			return nil, imapi.Errorf(imapi.ErrBadRequest, "system notifications go to accounts")
		}
		a.ConvID = imapi.GroupConvID(req.To)
		a.GroupID = req.To
		what = "group"
	}
	if err := s.moderate(ctx, sess, a); err != nil {
		return nil, err
	}
	if t := dispatch.TurnOf(ctx); t != nil {
		if err := t.Wait(ctx); err != nil {
			return nil, node.StoreErr(err, what)
		}
		a.Queued = t.Done
	}
	res, err := s.st.AppendMessage(ctx, a)
	if err != nil {
		return nil, node.StoreErr(err, what)
	}
	ack := &imapi.SendAck{MsgID: res.MsgID, ConvID: a.ConvID, Seq: res.Seq, Time: res.Time}
	if !res.Duplicate {
		// The ack goes out after this returns; pushes are published first on
		// the same connection, which costs nothing (no round trip) and keeps
		// the order: a message is durable before anyone hears of it.
		msg := imapi.Message{
			MsgID: res.MsgID, ConvID: a.ConvID, ConvType: a.ConvType, From: a.Sender, FromDevice: a.SenderDevice,
			To: a.To, Seq: res.Seq, ClientMsgID: a.ClientMsgID, Type: a.Type, Body: a.Body, Mentions: a.Mentions, Time: res.Time,
		}
		s.n.PushAll(sess, res.Members, imapi.OpPush, &msg)
		s.publishMessage(ctx, sess.AppKey, &msg)
		s.offlinePush(sess, res.Members, &msg)
	}
	return ack, nil
}

// moderate asks the app's moderation hook about a user's message before it
// is stored: deny refuses the send with ErrRejected (nobody else sees it),
// replace swaps the body. When the hook fails, the app's configured default
// decision applies (webhook.Moderate returns it). System notifications from
// the app's own server are not moderated.
func (s *Service) moderate(ctx context.Context, sess *imapi.Session, a *store.Append) error {
	if s.hooks == nil || sess.Account == imapi.SystemAccount {
		return nil
	}
	d, err := s.hooks.Moderate(ctx, sess.AppKey, webhook.ModerationRequest{
		From: a.Sender, ConvType: a.ConvType, To: a.To, ClientMsgID: a.ClientMsgID, Type: a.Type, Body: a.Body,
	})
	if err != nil {
		s.log.Debug("moderation hook failed; default applied", "appkey", sess.AppKey, "action", d.Action, "err", err)
	}
	switch d.Action {
	case webhook.Deny:
		return imapi.Errorf(imapi.ErrRejected, "%s", d.Reason)
	case webhook.Replace:
		if len(d.Body) == 0 || len(d.Body) > s.cfg.MaxMessageBytes || !json.Valid(d.Body) {
			return imapi.Errorf(imapi.ErrRejected, "moderation replaced the body with an invalid one")
		}
		a.Body = d.Body
	}
	return nil
}

// publishMessage queues the data-sync copy of a stored message for the
// app's webhook. It never fails the send: the message is already durable and
// delivered; a lost copy is logged and counted.
func (s *Service) publishMessage(ctx context.Context, appkey string, m *imapi.Message) {
	if s.hooks == nil {
		return
	}
	ev, err := webhook.MessageEvent(m)
	if err == nil {
		err = s.hooks.Publish(ctx, appkey, ev)
	}
	if err != nil {
		s.n.Metrics.HookErrors.Inc()
		s.log.Warn("webhook message event not queued", "appkey", appkey, "msg_id", m.MsgID, "err", err)
	}
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

func (s *Service) validateSend(req *imapi.SendReq) error {
	switch req.ConvType {
	case imapi.ConvP2P, imapi.ConvGroup, imapi.ConvSuper:
	case imapi.ConvRoom:
		return imapi.Errorf(imapi.ErrBadRequest, "chatrooms are not served by this service")
	default:
		return imapi.Errorf(imapi.ErrBadRequest, "conv_type %d", req.ConvType)
	}
	if !imapi.ValidName(req.To) {
		return imapi.Errorf(imapi.ErrBadRequest, "to: want 1-64 of A-Z a-z 0-9 _ -")
	}
	if req.ClientMsgID == "" || len(req.ClientMsgID) > 64 {
		return imapi.Errorf(imapi.ErrBadRequest, "client_msg_id: 1-64 bytes required")
	}
	if req.Type == "" {
		req.Type = "text"
	}
	if len(req.Type) > 32 {
		return imapi.Errorf(imapi.ErrBadRequest, "type: at most 32 bytes")
	}
	if len(req.Body) == 0 || string(req.Body) == "null" {
		return imapi.Errorf(imapi.ErrBadRequest, "body: required")
	}
	if len(req.Body) > s.cfg.MaxMessageBytes {
		s.n.Metrics.Oversize.Inc()
		return imapi.Errorf(imapi.ErrTooLarge, "body of %d bytes exceeds %d", len(req.Body), s.cfg.MaxMessageBytes)
	}
	if !json.Valid(req.Body) {
		return imapi.Errorf(imapi.ErrBadRequest, "body: not JSON")
	}
	if len(req.Mentions) > s.cfg.MaxMentions {
		return imapi.Errorf(imapi.ErrBadRequest, "mentions: at most %d", s.cfg.MaxMentions)
	}
	for _, m := range req.Mentions {
		if m == imapi.MentionAll && req.ConvType == imapi.ConvSuper {
			continue
		}
		if !imapi.ValidName(m) {
			return imapi.Errorf(imapi.ErrBadRequest, "mentions: %q is not an account", m)
		}
	}
	return nil
}

// authorizeConv checks that sess.Account may read convID and returns the
// conversation's members (for pushes).
func (s *Service) authorizeConv(ctx context.Context, sess *imapi.Session, convID string) (int, []string, error) {
	typ, a, b, ok := imapi.ParseConvID(convID)
	if !ok {
		return 0, nil, imapi.Errorf(imapi.ErrBadRequest, "conv_id %q", convID)
	}
	switch typ {
	case imapi.ConvP2P:
		if sess.Account != a && sess.Account != b {
			return 0, nil, imapi.Errorf(imapi.ErrForbidden, "not a party of %s", convID)
		}
		if a == b {
			return typ, []string{a}, nil
		}
		return typ, []string{a, b}, nil
	case imapi.ConvSuper:
		ok, err := s.st.IsSuperMember(ctx, sess.AppKey, a, sess.Account)
		if err != nil {
			return 0, nil, node.StoreErr(err, "group")
		}
		if !ok {
			return 0, nil, imapi.Errorf(imapi.ErrForbidden, "not a member of %s", a)
		}
		return typ, nil, nil
	default:
		g, err := s.st.Group(ctx, sess.AppKey, a)
		if err != nil {
			return 0, nil, node.StoreErr(err, "group")
		}
		if !slices.Contains(g.Members, sess.Account) {
			return 0, nil, imapi.Errorf(imapi.ErrForbidden, "not a member of %s", a)
		}
		return typ, g.Members, nil
	}
}

func toAPI(m *store.Message) imapi.Message {
	return imapi.Message{
		MsgID: m.MsgID, ConvID: m.ConvID, ConvType: m.ConvType, From: m.Sender, FromDevice: m.SenderDevice,
		To: m.To, Seq: m.Seq, ClientMsgID: m.ClientMsgID, Type: m.Type, Body: m.Body, Mentions: m.Mentions,
		Time: m.Time, Recalled: m.Recalled,
	}
}

func toSyncResp(ms []store.Message, more bool) *imapi.SyncResp {
	out := &imapi.SyncResp{Messages: make([]imapi.Message, len(ms)), HasMore: more}
	for i := range ms {
		out.Messages[i] = toAPI(&ms[i])
	}
	return out
}

func (s *Service) sync(ctx context.Context, sess *imapi.Session, body []byte) (any, error) {
	var req imapi.SyncReq
	if err := node.Decode(body, &req); err != nil {
		return nil, err
	}
	if _, _, err := s.authorizeConv(ctx, sess, req.ConvID); err != nil {
		return nil, err
	}
	if req.AfterSeq < 0 {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "after_seq: must not be negative")
	}
	ms, more, err := s.st.Messages(ctx, sess.AppKey, req.ConvID, req.AfterSeq, s.n.Page(req.Limit))
	if err != nil {
		return nil, node.StoreErr(err, "conversation")
	}
	return toSyncResp(ms, more), nil
}

func (s *Service) history(ctx context.Context, sess *imapi.Session, body []byte) (any, error) {
	var req imapi.HistoryReq
	if err := node.Decode(body, &req); err != nil {
		return nil, err
	}
	return s.History(ctx, sess, &req)
}

// History pages backwards through a conversation the caller belongs to.
func (s *Service) History(ctx context.Context, sess *imapi.Session, req *imapi.HistoryReq) (*imapi.SyncResp, error) {
	if _, _, err := s.authorizeConv(ctx, sess, req.ConvID); err != nil {
		return nil, err
	}
	if req.BeforeSeq < 0 {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "before_seq: must not be negative")
	}
	ms, more, err := s.st.History(ctx, sess.AppKey, req.ConvID, req.BeforeSeq, s.n.Page(req.Limit))
	if err != nil {
		return nil, node.StoreErr(err, "conversation")
	}
	return toSyncResp(ms, more), nil
}

func (s *Service) read(ctx context.Context, sess *imapi.Session, body []byte) (any, error) {
	var req imapi.ReadReq
	if err := node.Decode(body, &req); err != nil {
		return nil, err
	}
	typ, members, err := s.authorizeConv(ctx, sess, req.ConvID)
	if err != nil {
		return nil, err
	}
	if req.Seq < 0 {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "seq: must not be negative")
	}
	if typ == imapi.ConvSuper {
		_, gid, _, _ := imapi.ParseConvID(req.ConvID)
		return nil, s.readSuper(ctx, sess, gid, req.Seq)
	}
	readSeq, err := s.st.MarkRead(ctx, sess.AppKey, sess.Account, req.ConvID, req.Seq)
	if err != nil {
		return nil, node.StoreErr(err, "conversation")
	}
	if typ == imapi.ConvP2P {
		for _, m := range members {
			if m != sess.Account {
				s.n.PushAll(sess, []string{m}, imapi.OpReceipt, &imapi.Receipt{ConvID: req.ConvID, Reader: sess.Account, Seq: readSeq})
			}
		}
	}
	return nil, nil
}

func (s *Service) recall(ctx context.Context, sess *imapi.Session, body []byte) (any, error) {
	var req imapi.RecallReq
	if err := node.Decode(body, &req); err != nil {
		return nil, err
	}
	if req.MsgID == "" || len(req.MsgID) > 64 {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "msg_id: required")
	}
	typ, members, err := s.authorizeConv(ctx, sess, req.ConvID)
	if err != nil {
		return nil, err
	}
	m, err := s.st.MessageByID(ctx, sess.AppKey, req.ConvID, req.MsgID)
	if err != nil {
		return nil, node.StoreErr(err, "message")
	}
	if m.Sender != sess.Account {
		return nil, imapi.Errorf(imapi.ErrForbidden, "only the sender may recall")
	}
	if m.Recalled {
		return nil, nil
	}
	if s.now().UnixMilli()-m.Time > s.cfg.RecallWindow.D().Milliseconds() {
		return nil, imapi.Errorf(imapi.ErrRecallExpired, "")
	}
	if err := s.st.Recall(ctx, sess.AppKey, req.ConvID, req.MsgID); err != nil {
		return nil, node.StoreErr(err, "message")
	}
	rc := &imapi.Recalled{ConvID: req.ConvID, MsgID: req.MsgID, Seq: m.Seq, By: sess.Account}
	if typ == imapi.ConvSuper {
		s.n.PushSuper(sess.AppKey, m.To, imapi.OpRecalled, rc, sess.SessionID)
		return nil, nil
	}
	s.n.PushAll(sess, members, imapi.OpRecalled, rc)
	return nil, nil
}

func (s *Service) convList(ctx context.Context, sess *imapi.Session, _ []byte) (any, error) {
	cs, err := s.st.Conversations(ctx, sess.AppKey, sess.Account, s.cfg.ConvListLimit)
	if err != nil {
		return nil, node.StoreErr(err, "conversations")
	}
	if cs, err = s.withSuperConversations(ctx, sess, cs, s.cfg.ConvListLimit); err != nil {
		return nil, node.StoreErr(err, "conversations")
	}
	out := &imapi.ConvListResp{Conversations: make([]imapi.Conversation, len(cs))}
	for i, c := range cs {
		conv := imapi.Conversation{ConvID: c.ConvID, ConvType: c.ConvType, Peer: c.Peer, LastSeq: c.LastSeq,
			ReadSeq: c.ReadSeq, Unread: c.Unread, Mentions: c.Mentions}
		if c.Last != nil {
			m := toAPI(c.Last)
			conv.Last = &m
		}
		out.Conversations[i] = conv
	}
	s.markMuted(ctx, sess, out.Conversations)
	return out, nil
}
