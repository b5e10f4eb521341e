package msg

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/pkg/jsonenc"

	"github.com/longlink/longlink/core/internal/buswire"
	"github.com/longlink/longlink/core/service/internal/node"
	"github.com/longlink/longlink/core/store"
	"github.com/longlink/longlink/core/webhook"
)

func (s *Messages) send(ctx context.Context, sess *buswire.Session, body []byte) (any, error) {
	var req imapi.SendReq
	if len(body) == 0 {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "empty body")
	}
	if err := buswire.DecodeSendReq(body, &req); err != nil {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "body: %v", err)
	}
	return s.Send(ctx, sess, &req)
}

// sendBatch answers a gateway's send batch (buswire.OpSendBatch): one
// session's sends in the order the client sent them (core/gateway/ORDER.md).
func (s *Messages) sendBatch(ctx context.Context, sess *buswire.Session, body []byte) (any, error) {
	var br buswire.SendBatchReq
	if len(body) == 0 {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "empty body")
	}
	// body was checked as JSON with its request: decoded once, not again
	// for the batch and again for each send.
	if err := buswire.DecodeSendBatchReq(body, &br); err != nil {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "body: %v", err)
	}
	if len(br.Sends) == 0 || len(br.Sends) > buswire.MaxSendBatch {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "sends: 1..%d required", buswire.MaxSendBatch)
	}
	reqs := make([]*imapi.SendReq, len(br.Sends))
	bad := make([]error, len(br.Sends))
	for i, b := range br.Sends {
		reqs[i] = new(imapi.SendReq)
		if err := buswire.DecodeValidSendReq(b, reqs[i]); err != nil {
			bad[i] = imapi.Errorf(imapi.ErrBadRequest, "body: %v", err)
		}
	}
	acks, errs := s.sendAll(ctx, sess, reqs, bad)
	resp := &buswire.SendBatchResp{Results: make([]buswire.SendResult, len(reqs))}
	for i := range reqs {
		if errs[i] == nil {
			resp.Results[i].Ack = acks[i]
			continue
		}
		var ie *imapi.Error
		if !errors.As(errs[i], &ie) {
			s.n.Log.Error("send failed", "err", errs[i])
			ie = &imapi.Error{Code: imapi.ErrInternal}
		}
		resp.Results[i] = buswire.SendResult{Code: ie.Code, Message: ie.Message, RetryAfterMs: ie.RetryAfterMs}
	}
	return resp, nil
}

// Send stores a message from sess.Account durably, then pushes it to the
// conversation's members (the sender's other sessions included). The server
// API calls it directly to send as a user or as imapi.SystemAccount.
func (s *Messages) Send(ctx context.Context, sess *buswire.Session, req *imapi.SendReq) (*imapi.SendAck, error) {
	acks, errs := s.sendAll(ctx, sess, []*imapi.SendReq{req}, nil)
	return acks[0], errs[0]
}

// sendAll stores one session's sends as one store unit — in one
// transaction, each conversation's in their order — then pushes each
// stored one. pre holds refusals decided before (nil: none). A send
// refused for a retryable reason makes every send after it retryable too,
// and none of them is stored: the gateway resends that tail as it is, so a
// later message is never stored before an earlier one that is to come
// again (core/gateway/ORDER.md).
func (s *Messages) sendAll(ctx context.Context, sess *buswire.Session, reqs []*imapi.SendReq, pre []error) ([]*imapi.SendAck, []error) {
	acks := make([]*imapi.SendAck, len(reqs))
	errs := make([]error, len(reqs))
	if pre != nil {
		copy(errs, pre)
	}
	as := make([]*store.Append, len(reqs))
	var unit []*store.Append
	var in []int // index in reqs of each append of the unit
	for i, req := range reqs {
		if errs[i] == nil {
			as[i], errs[i] = s.prepareSend(ctx, sess, req)
		}
		if errs[i] != nil {
			if retryable(errs[i]) {
				tailRetryable(errs, i)
				break
			}
			continue
		}
		unit = append(unit, as[i])
		in = append(in, i)
	}
	if len(unit) == 0 {
		return acks, errs
	}
	res, err := s.n.Store.AppendMessages(ctx, unit)
	if err != nil {
		err = node.StoreErr(err, "conversation")
		for _, i := range in {
			errs[i] = err
		}
		return acks, errs
	}
	for k, i := range in {
		if res[k].Err != nil {
			what := "recipient"
			if as[i].GroupID != "" {
				what = "group"
			}
			errs[i] = node.StoreErr(res[k].Err, what)
			continue
		}
		acks[i], errs[i] = s.finishSend(ctx, sess, as[i], &res[k])
		if errs[i] != nil && retryable(errs[i]) {
			// Stored, but its side work is not queued: it goes again (a
			// duplicate, the work redone), and so do the ones after it
			// (stored too; their resends are duplicates).
			tailRetryable(errs, i)
			for _, j := range in[k+1:] {
				acks[j] = nil
			}
			break
		}
	}
	return acks, errs
}

// retryable reports whether err refuses a send for a reason that may pass.
func retryable(err error) bool {
	var ie *imapi.Error
	return errors.As(err, &ie) && ie.Code.Retryable()
}

// tailRetryable gives every send after i a retryable refusal.
func tailRetryable(errs []error, i int) {
	for j := i + 1; j < len(errs); j++ {
		errs[j] = imapi.Errorf(imapi.ErrUnavailable, "behind a send to retry")
	}
}

// prepareSend checks a send and builds its append (moderated).
func (s *Messages) prepareSend(ctx context.Context, sess *buswire.Session, req *imapi.SendReq) (*store.Append, error) {
	if err := s.validateSend(req); err != nil {
		return nil, err
	}
	if req.ConvType == imapi.ConvSuper {
		return s.prepareSuper(ctx, sess, req)
	}
	now := s.n.Now()
	a := &store.Append{Message: store.Message{
		AppKey: sess.AppKey, ConvType: req.ConvType, MsgID: node.NewID(now), Sender: sess.Account,
		SenderDevice: sess.DeviceType, To: req.To, ClientMsgID: req.ClientMsgID, Type: req.Type,
		Body: req.Body, Mentions: req.Mentions, Time: now.UnixMilli(),
	}}
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
	}
	if err := s.moderate(ctx, sess, a); err != nil {
		return nil, err
	}
	return a, nil
}

// finishSend tells the conversation of a stored message and builds its ack.
func (s *Messages) finishSend(ctx context.Context, sess *buswire.Session, a *store.Append, res *store.AppendResult) (*imapi.SendAck, error) {
	if a.Super {
		return s.finishSuper(ctx, sess, a, res)
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
func (s *Messages) moderate(ctx context.Context, sess *buswire.Session, a *store.Append) error {
	if s.hooks == nil || sess.Account == imapi.SystemAccount {
		return nil
	}
	d, err := s.hooks.Moderate(ctx, sess.AppKey, webhook.ModerationRequest{
		From: a.Sender, ConvType: a.ConvType, To: a.To, ClientMsgID: a.ClientMsgID, Type: a.Type, Body: a.Body,
	})
	if err != nil {
		s.n.Log.Debug("moderation hook failed; default applied", "appkey", sess.AppKey, "action", d.Action, "err", err)
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
func (s *Messages) publishMessage(ctx context.Context, appkey string, m *imapi.Message) {
	if s.hooks == nil {
		return
	}
	ev, err := webhook.MessageEvent(m)
	if err == nil {
		err = s.hooks.Publish(ctx, appkey, ev)
	}
	if err != nil {
		s.n.Metrics.HookErrors.Inc()
		s.n.Log.Warn("webhook message event not queued", "appkey", appkey, "msg_id", m.MsgID, "err", err)
	}
}

func (s *Messages) validateSend(req *imapi.SendReq) error {
	switch req.ConvType {
	case imapi.ConvP2P, imapi.ConvGroup, imapi.ConvSuper:
	case imapi.ConvRoom:
		return imapi.Errorf(imapi.ErrBadRequest, "conv_type: 3 (chatroom) is not sent here: use the room API; want 1 (1:1), 2 (group) or 4 (super-group)")
	default:
		return imapi.Errorf(imapi.ErrBadRequest, "conv_type: %d is not one of 1 (1:1), 2 (group), 4 (super-group)", req.ConvType)
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
	if !jsonenc.Valid(req.Body) {
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

// blockMode is the store's blacklist mode of an app.
func (s *Messages) blockMode(appkey string) int {
	if s.cfg.BlockBoth[appkey] {
		return store.BlockBoth
	}
	return store.BlockInbound
}

// offlinePush hands a stored message's recipients (the sender and the
// system account excluded) to core/push.
func (s *Messages) offlinePush(sess *buswire.Session, members []string, m *imapi.Message) {
	if s.offline == nil {
		return
	}
	rcpt := make([]string, 0, len(members))
	for _, a := range members {
		if a != sess.Account && a != imapi.SystemAccount {
			rcpt = append(rcpt, a)
		}
	}
	if len(rcpt) > 0 {
		s.offline.MessageStored(sess.AppKey, m, rcpt)
	}
}
