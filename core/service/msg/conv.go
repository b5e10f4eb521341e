package msg

import (
	"context"
	"slices"

	"github.com/longlink/longlink/core/imapi"

	"github.com/longlink/longlink/core/internal/buswire"
	"github.com/longlink/longlink/core/service/internal/node"
	"github.com/longlink/longlink/core/store"
)

// authorizeConv checks that sess.Account may read convID and returns the
// conversation's members (for pushes).
func (s *Messages) authorizeConv(ctx context.Context, sess *buswire.Session, convID string) (int, []string, error) {
	typ, a, b, ok := imapi.ParseConvID(convID)
	if !ok {
		return 0, nil, imapi.Errorf(imapi.ErrBadRequest, "conv_id: %q is not p:<account>:<account>, g:<group> or s:<group>", convID)
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
		ok, err := s.n.Store.IsSuperMember(ctx, sess.AppKey, a, sess.Account)
		if err != nil {
			return 0, nil, node.StoreErr(err, "group")
		}
		if !ok {
			return 0, nil, imapi.Errorf(imapi.ErrForbidden, "not a member of %s", a)
		}
		return typ, nil, nil
	default:
		g, err := s.n.Store.Group(ctx, sess.AppKey, a)
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

func (s *Messages) sync(ctx context.Context, sess *buswire.Session, body []byte) (any, error) {
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
	ms, more, err := s.n.Store.Messages(ctx, sess.AppKey, req.ConvID, req.AfterSeq, s.n.Page(req.Limit))
	if err != nil {
		return nil, node.StoreErr(err, "conversation")
	}
	return toSyncResp(ms, more), nil
}

func (s *Messages) history(ctx context.Context, sess *buswire.Session, body []byte) (any, error) {
	var req imapi.HistoryReq
	if err := node.Decode(body, &req); err != nil {
		return nil, err
	}
	return s.History(ctx, sess, &req)
}

// History pages backwards through a conversation the caller belongs to.
func (s *Messages) History(ctx context.Context, sess *buswire.Session, req *imapi.HistoryReq) (*imapi.SyncResp, error) {
	if _, _, err := s.authorizeConv(ctx, sess, req.ConvID); err != nil {
		return nil, err
	}
	if req.BeforeSeq < 0 {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "before_seq: must not be negative")
	}
	ms, more, err := s.n.Store.History(ctx, sess.AppKey, req.ConvID, req.BeforeSeq, s.n.Page(req.Limit))
	if err != nil {
		return nil, node.StoreErr(err, "conversation")
	}
	return toSyncResp(ms, more), nil
}

func (s *Messages) read(ctx context.Context, sess *buswire.Session, body []byte) (any, error) {
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
	readSeq, err := s.n.Store.MarkRead(ctx, sess.AppKey, sess.Account, req.ConvID, req.Seq)
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

func (s *Messages) recall(ctx context.Context, sess *buswire.Session, body []byte) (any, error) {
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
	m, err := s.n.Store.MessageByID(ctx, sess.AppKey, req.ConvID, req.MsgID)
	if err != nil {
		return nil, node.StoreErr(err, "message")
	}
	if m.Sender != sess.Account {
		return nil, imapi.Errorf(imapi.ErrForbidden, "only the sender may recall")
	}
	if m.Recalled {
		return nil, nil
	}
	if s.n.Now().UnixMilli()-m.Time > s.cfg.RecallWindow.Milliseconds() {
		return nil, imapi.Errorf(imapi.ErrRecallExpired, "")
	}
	if err := s.n.Store.Recall(ctx, sess.AppKey, req.ConvID, req.MsgID); err != nil {
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

func (s *Messages) convList(ctx context.Context, sess *buswire.Session, _ []byte) (any, error) {
	cs, err := s.n.Store.Conversations(ctx, sess.AppKey, sess.Account, s.cfg.ConvListLimit)
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

// markMuted flags the conversations the caller muted (one query; on error
// the list goes out unflagged).
func (s *Messages) markMuted(ctx context.Context, sess *buswire.Session, cs []imapi.Conversation) {
	if len(cs) == 0 {
		return
	}
	list, err := s.n.Store.Mutes(ctx, sess.AppKey, sess.Account)
	if err != nil {
		s.n.Log.Warn("mutes of the conversation list", "err", err)
		return
	}
	for i := range cs {
		cs[i].Muted = slices.Contains(list, cs[i].ConvID)
	}
}
