package msg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/internal/jsworkers"

	"github.com/longlink/longlink/core/internal/buswire"
	"github.com/longlink/longlink/core/service/internal/node"
	"github.com/longlink/longlink/core/store"
)

// Super-groups (read diffusion, see core/imapi/supergroup.go). The send path
// stores one copy of the message, publishes one push on the group's
// subject (gateways holding members fan out locally) and, when there is
// per-member side work (mentions, the webhook copy), queues one job on
// JetStream before acking. Workers on a durable consumer do the side work
// and ack it afterwards, so a worker that dies mid-job has the job
// redelivered to another.

// sideWork runs super-group side work on this node.
type sideWork struct {
	mu   sync.Mutex
	pool *jsworkers.Pool
}

// superJob is the side work of one super-group message.
type superJob struct {
	AppKey   string         `json:"appkey"`
	GroupID  string         `json:"group_id"`
	Seq      int64          `json:"seq"`
	Mentions []string       `json:"mentions,omitempty"`
	Message  *imapi.Message `json:"message,omitempty"` // for the webhook copy and offline push
	Sent     int64          `json:"sent"`              // unix ms of the send
}

// startSideWork creates the work queue and the durable consumer and starts
// the workers. Without JetStream, super-group sends that need side work
// are refused (503).
func (s *Messages) startSideWork(ctx context.Context) error {
	if s.js == nil {
		return nil
	}
	c := &s.cfg.Super
	storage := jetstream.FileStorage
	if c.MemoryStorage {
		storage = jetstream.MemoryStorage
	}
	if _, err := s.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: c.Stream, Subjects: []string{c.Subject + ".>"}, Storage: storage,
		Retention: jetstream.WorkQueuePolicy, Duplicates: 2 * time.Minute, Replicas: max(s.cfg.Replicas, 1),
	}); errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
		s.n.Log.Warn("JetStream is off: super-group sends with mentions or webhooks are refused")
		s.js = nil
		return nil
	} else if err != nil {
		return fmt.Errorf("service: super stream %s: %w", c.Stream, err)
	}
	cons, err := s.js.CreateOrUpdateConsumer(ctx, c.Stream, jetstream.ConsumerConfig{
		Durable: c.Consumer, AckPolicy: jetstream.AckExplicitPolicy, AckWait: c.AckWait.D(),
		MaxDeliver: c.MaxDeliver, MaxAckPending: 64 * c.Workers, FilterSubject: c.Subject + ".>",
	})
	if err != nil {
		return fmt.Errorf("service: super consumer: %w", err)
	}
	st := &s.side
	st.mu.Lock()
	defer st.mu.Unlock()
	pool, err := jsworkers.Start(cons, c.Workers, 2*c.Workers, s.runJob, func(err error) {
		s.n.Log.Debug("super consume", "err", err)
	})
	if err != nil {
		return fmt.Errorf("service: super consume: %w", err)
	}
	st.pool = pool
	return nil
}

// stopSideWork stops pulling and waits for the jobs in hand (unacked ones are
// redelivered to other nodes).
func (s *Messages) stopSideWork(ctx context.Context) {
	st := &s.side
	st.mu.Lock()
	pool := st.pool
	st.pool = nil
	st.mu.Unlock()
	if pool != nil {
		_ = pool.Stop(ctx)
	}
}

func (s *Messages) runJob(ctx context.Context, m jetstream.Msg) {
	var j superJob
	if err := json.Unmarshal(m.Data(), &j); err != nil || !imapi.ValidName(j.AppKey) || !imapi.ValidName(j.GroupID) || j.Seq < 1 {
		s.metrics.jobs.WithLabelValues("bad").Inc()
		s.n.Log.Warn("bad super-group job", "err", err)
		_ = m.Term()
		return
	}
	var err error
	if len(j.Mentions) > 0 {
		err = s.n.Store.AddSuperMentions(ctx, j.AppKey, j.GroupID, j.Seq, j.Mentions)
	}
	if err == nil && j.Message != nil && s.offline != nil && len(j.Mentions) > 0 {
		err = s.superOfflinePush(ctx, &j)
	}
	if err == nil && j.Message != nil && s.hooks != nil {
		s.publishMessage(ctx, j.AppKey, j.Message)
	}
	if err != nil {
		md, merr := m.Metadata()
		if merr == nil && md.NumDelivered >= uint64(s.cfg.Super.MaxDeliver) {
			s.metrics.jobs.WithLabelValues("dropped").Inc()
			s.n.Log.Error("super-group job dropped after its last attempt", "appkey", j.AppKey, "group", j.GroupID, "seq", j.Seq, "err", err)
			_ = m.Term()
			return
		}
		s.metrics.jobs.WithLabelValues("retry").Inc()
		s.n.Log.Warn("super-group job failed; retried", "appkey", j.AppKey, "group", j.GroupID, "seq", j.Seq, "err", err)
		_ = m.NakWithDelay(time.Second)
		return
	}
	if err := m.DoubleAck(ctx); err != nil {
		s.n.Log.Warn("super-group job ack", "err", err)
	}
	s.metrics.jobs.WithLabelValues("done").Inc()
	s.metrics.jobTime.Observe(time.Since(time.UnixMilli(j.Sent)).Seconds())
}

// superOfflinePush hands the mentioned members (not the sender) to the
// offline push: a super-group notifies offline members only of messages
// that name them. "@all" notifies nobody offline (100,000 notifications per
// message would be a storm); it is counted in their mentions.
func (s *Messages) superOfflinePush(ctx context.Context, j *superJob) error {
	var rcpt []string
	for _, a := range j.Mentions {
		if a == imapi.MentionAll || a == j.Message.From || slices.Contains(rcpt, a) {
			continue
		}
		ok, err := s.n.Store.IsSuperMember(ctx, j.AppKey, j.GroupID, a)
		if err != nil {
			return err
		}
		if ok {
			rcpt = append(rcpt, a)
		}
	}
	if len(rcpt) > 0 {
		s.offline.MessageStored(j.AppKey, j.Message, rcpt)
	}
	return nil
}

// prepareSuper checks a super-group send and builds its append: the
// message is stored once and published once (finishSuper).
func (s *Messages) prepareSuper(ctx context.Context, sess *buswire.Session, req *imapi.SendReq) (*store.Append, error) {
	if sess.Account == imapi.SystemAccount {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "system notifications go to accounts")
	}
	if slices.Contains(req.Mentions, imapi.MentionAll) {
		g, err := s.n.Store.SuperGroup(ctx, sess.AppKey, req.To)
		if err != nil {
			return nil, node.StoreErr(err, "group")
		}
		if g.Owner != sess.Account {
			return nil, imapi.Errorf(imapi.ErrForbidden, "only the owner mentions @all")
		}
	}
	now := s.n.Now()
	a := &store.Append{Message: store.Message{
		AppKey: sess.AppKey, ConvID: imapi.SuperConvID(req.To), ConvType: imapi.ConvSuper, MsgID: node.NewID(now), Sender: sess.Account,
		SenderDevice: sess.DeviceType, To: req.To, ClientMsgID: req.ClientMsgID, Type: req.Type,
		Body: req.Body, Mentions: req.Mentions, Time: now.UnixMilli(),
	}, GroupID: req.To, Super: true}
	if err := s.moderate(ctx, sess, a); err != nil {
		return nil, err
	}
	return a, nil
}

// finishSuper publishes a stored super-group message once and queues its
// side work (mentions, the webhook copy).
func (s *Messages) finishSuper(ctx context.Context, sess *buswire.Session, a *store.Append, res *store.AppendResult) (*imapi.SendAck, error) {
	msg := imapi.Message{
		MsgID: res.MsgID, ConvID: a.ConvID, ConvType: a.ConvType, From: a.Sender, FromDevice: a.SenderDevice,
		To: a.To, Seq: res.Seq, ClientMsgID: a.ClientMsgID, Type: a.Type, Body: a.Body, Mentions: a.Mentions, Time: res.Time,
	}
	if !res.Duplicate {
		s.n.PushSuper(sess.AppKey, a.To, imapi.OpPush, &msg, sess.SessionID)
	}
	// Side work is queued (again, for a resend: JetStream drops the
	// duplicate, the work is idempotent) before the ack, so that a crash
	// after the commit cannot lose it: the client resends until acked.
	if len(a.Mentions) > 0 || s.hooks != nil {
		j := superJob{AppKey: sess.AppKey, GroupID: a.To, Seq: res.Seq, Mentions: a.Mentions, Sent: a.Time}
		if s.hooks != nil || (s.offline != nil && len(a.Mentions) > 0) {
			j.Message = &msg
		}
		if err := s.queueSuper(ctx, &j, res.MsgID); err != nil {
			s.metrics.queueErrs.Inc()
			s.n.Log.Warn("super-group job not queued", "group", a.To, "err", err)
			return nil, imapi.Errorf(imapi.ErrUnavailable, "side work not queued; resend")
		}
	}
	return &imapi.SendAck{MsgID: res.MsgID, ConvID: a.ConvID, Seq: res.Seq, Time: res.Time}, nil
}

func (s *Messages) queueSuper(ctx context.Context, j *superJob, msgID string) error {
	if s.js == nil {
		return errors.New("no JetStream")
	}
	data, err := json.Marshal(j)
	if err != nil {
		return err
	}
	_, err = s.js.Publish(ctx, s.cfg.Super.Subject+"."+j.AppKey, data, jetstream.WithMsgID(j.AppKey+"."+msgID))
	return err
}

// readSuper moves the caller's read position in a super-group.
func (s *Messages) readSuper(ctx context.Context, sess *buswire.Session, groupID string, seq int64) error {
	if _, err := s.n.Store.MarkSuperRead(ctx, sess.AppKey, groupID, sess.Account, seq); err != nil {
		return node.StoreErr(err, "group")
	}
	return nil
}

// withSuperConversations merges the caller's super-group conversations
// into its conversation list (most recent first, at most limit).
func (s *Messages) withSuperConversations(ctx context.Context, sess *buswire.Session, cs []store.ConvState, limit int) ([]store.ConvState, error) {
	sup, err := s.n.Store.SuperConversations(ctx, sess.AppKey, sess.Account, limit)
	if err != nil {
		return nil, err
	}
	if len(sup) == 0 {
		return cs, nil
	}
	all := append(cs, sup...)
	sort.SliceStable(all, func(i, j int) bool { return all[i].LastTime > all[j].LastTime })
	return all[:min(len(all), limit)], nil
}
