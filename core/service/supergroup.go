package service

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
	"github.com/prometheus/client_golang/prometheus"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/service/internal/node"
	"github.com/longlink/longlink/core/store"
	"github.com/longlink/longlink/pkg/config"
)

// Super-groups (read diffusion, see core/imapi/supergroup.go). The send path
// stores one copy of the message, publishes one push on the group's
// subject (gateways holding members fan out locally) and, when there is
// per-member side work (mentions, the webhook copy), queues one job on
// JetStream before acking. Workers on a durable consumer do the side work
// and ack it afterwards, so a worker that dies mid-job has the job
// redelivered to another.

// SuperConfig tunes super-groups (`service.super`).
type SuperConfig struct {
	// MaxMembers caps a super-group's members. Default 100000.
	MaxMembers int `yaml:"max_members"`
	// MaxBatch caps the accounts of one create, add or remove call and the
	// page of a member list. Default 1000.
	MaxBatch int `yaml:"max_batch"`
	// Stream and Subject are the JetStream work queue of side work
	// (subjects <subject>.<appkey>). Defaults LL_SUPER, ll.superwork.
	Stream  string `yaml:"stream"`
	Subject string `yaml:"subject"`
	// Consumer is the durable consumer shared by every service node.
	// Default super.
	Consumer string `yaml:"consumer"`
	// Workers run side-work jobs on this node. Default 4.
	Workers int `yaml:"workers"`
	// AckWait is how long a job may run before JetStream redelivers it to
	// another worker (a crashed one never acks). Default 30s.
	AckWait config.Duration `yaml:"ack_wait"`
	// MaxDeliver bounds the attempts of one job. Default 20.
	MaxDeliver int `yaml:"max_deliver"`
	// MemoryStorage keeps the work queue in memory (tests); default file.
	MemoryStorage bool `yaml:"memory_storage"`
}

func (c *SuperConfig) applyDefaults() {
	if c.MaxMembers == 0 {
		c.MaxMembers = 100_000
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = 1000
	}
	if c.Stream == "" {
		c.Stream = "LL_SUPER"
	}
	if c.Subject == "" {
		c.Subject = "ll.superwork"
	}
	if c.Consumer == "" {
		c.Consumer = "super"
	}
	if c.Workers == 0 {
		c.Workers = 4
	}
	if c.AckWait == 0 {
		c.AckWait = config.Duration(30 * time.Second)
	}
	if c.MaxDeliver == 0 {
		c.MaxDeliver = 20
	}
}

func (c *SuperConfig) validate(errs *config.Errors) {
	if c.MaxMembers < 2 {
		errs.Addf("service.super.max_members: at least 2")
	}
	if c.MaxBatch < 1 || c.MaxBatch > 10_000 {
		errs.Addf("service.super.max_batch: must be in 1..10000")
	}
	if c.Workers < 1 {
		errs.Addf("service.super.workers: at least 1")
	}
	if c.AckWait.D() < time.Second {
		errs.Addf("service.super.ack_wait: at least 1s")
	}
	if c.MaxDeliver < 1 {
		errs.Addf("service.super.max_deliver: at least 1")
	}
	if !imapi.ValidName(c.Stream) || !imapi.ValidName(c.Consumer) {
		errs.Addf("service.super.stream, consumer: want 1-64 of A-Z a-z 0-9 _ -")
	}
	if c.Subject == "" {
		errs.Addf("service.super.subject: required")
	}
}

type superMetrics struct {
	jobs      *prometheus.CounterVec
	jobTime   prometheus.Histogram
	full      prometheus.Counter
	members   *prometheus.CounterVec
	queueErrs prometheus.Counter
}

func newSuperMetrics(reg prometheus.Registerer) (*superMetrics, error) {
	m := &superMetrics{
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_service_super_jobs_total", Help: "Super-group side-work jobs (mentions, webhook copy) by result: done, retry, bad, dropped.",
		}, []string{"result"}),
		jobTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "longlink_service_super_job_seconds", Help: "Time from a super-group send to the end of its side work.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
		full: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_service_super_full_total", Help: "Member additions refused by the super-group member limit.",
		}),
		members: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_service_super_member_changes_total", Help: "Super-group members added or removed, by change.",
		}, []string{"change"}),
		queueErrs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_service_super_queue_errors_total", Help: "Super-group jobs that could not be queued on JetStream (the send fails and the client resends).",
		}),
	}
	for _, c := range []prometheus.Collector{m.jobs, m.jobTime, m.full, m.members, m.queueErrs} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// superState is a node's super-group machinery.
type superState struct {
	m      *superMetrics
	mu     sync.Mutex
	cc     jetstream.ConsumeContext
	quit   chan struct{}
	wg     sync.WaitGroup
	cancel context.CancelFunc
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

// startSuper creates the work queue and the durable consumer and starts
// the workers. Without JetStream, super-group sends that need side work
// are refused (503).
func (s *Service) startSuper(ctx context.Context) error {
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
		Retention: jetstream.WorkQueuePolicy, Duplicates: 2 * time.Minute,
	}); errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
		s.log.Warn("JetStream is off: super-group sends with mentions or webhooks are refused")
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
	wctx, cancel := context.WithCancel(context.Background())
	work, quit := make(chan jetstream.Msg), make(chan struct{})
	st := &s.super
	st.mu.Lock()
	defer st.mu.Unlock()
	st.cancel, st.quit = cancel, quit
	for range c.Workers {
		st.wg.Add(1)
		go func() {
			defer st.wg.Done()
			for {
				select {
				case m := <-work:
					s.superWork(wctx, m)
				case <-quit:
					return
				}
			}
		}()
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		select {
		case work <- m:
		case <-quit:
		}
	}, jetstream.PullMaxMessages(2*c.Workers), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		s.log.Debug("super consume", "err", err)
	}))
	if err != nil {
		close(quit)
		cancel()
		st.wg.Wait()
		return fmt.Errorf("service: super consume: %w", err)
	}
	st.cc = cc
	return nil
}

// stopSuper stops pulling and waits for the jobs in hand (unacked ones are
// redelivered to other nodes).
func (s *Service) stopSuper(ctx context.Context) {
	st := &s.super
	st.mu.Lock()
	cc, quit, cancel := st.cc, st.quit, st.cancel
	st.cc = nil
	st.mu.Unlock()
	if cc == nil {
		return
	}
	cc.Drain()
	select {
	case <-cc.Closed():
	case <-ctx.Done():
		cc.Stop()
	}
	close(quit)
	done := make(chan struct{})
	go func() { st.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	cancel()
}

func (s *Service) superWork(ctx context.Context, m jetstream.Msg) {
	var j superJob
	if err := json.Unmarshal(m.Data(), &j); err != nil || !imapi.ValidName(j.AppKey) || !imapi.ValidName(j.GroupID) || j.Seq < 1 {
		s.super.m.jobs.WithLabelValues("bad").Inc()
		s.log.Warn("bad super-group job", "err", err)
		_ = m.Term()
		return
	}
	var err error
	if len(j.Mentions) > 0 {
		err = s.st.AddSuperMentions(ctx, j.AppKey, j.GroupID, j.Seq, j.Mentions)
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
			s.super.m.jobs.WithLabelValues("dropped").Inc()
			s.log.Error("super-group job dropped after its last attempt", "appkey", j.AppKey, "group", j.GroupID, "seq", j.Seq, "err", err)
			_ = m.Term()
			return
		}
		s.super.m.jobs.WithLabelValues("retry").Inc()
		s.log.Warn("super-group job failed; retried", "appkey", j.AppKey, "group", j.GroupID, "seq", j.Seq, "err", err)
		_ = m.NakWithDelay(time.Second)
		return
	}
	if err := m.DoubleAck(ctx); err != nil {
		s.log.Warn("super-group job ack", "err", err)
	}
	s.super.m.jobs.WithLabelValues("done").Inc()
	s.super.m.jobTime.Observe(time.Since(time.UnixMilli(j.Sent)).Seconds())
}

// superOfflinePush hands the mentioned members (not the sender) to the
// offline push: a super-group notifies offline members only of messages
// that name them. "@all" notifies nobody offline (100,000 notifications per
// message would be a storm); it is counted in their mentions.
func (s *Service) superOfflinePush(ctx context.Context, j *superJob) error {
	var rcpt []string
	for _, a := range j.Mentions {
		if a == imapi.MentionAll || a == j.Message.From || slices.Contains(rcpt, a) {
			continue
		}
		ok, err := s.st.IsSuperMember(ctx, j.AppKey, j.GroupID, a)
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

// sendSuper stores a super-group message once and publishes it once.
func (s *Service) sendSuper(ctx context.Context, sess *imapi.Session, req *imapi.SendReq) (*imapi.SendAck, error) {
	if sess.Account == imapi.SystemAccount {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "system notifications go to accounts")
	}
	if slices.Contains(req.Mentions, imapi.MentionAll) {
		g, err := s.st.SuperGroup(ctx, sess.AppKey, req.To)
		if err != nil {
			return nil, node.StoreErr(err, "group")
		}
		if g.Owner != sess.Account {
			return nil, imapi.Errorf(imapi.ErrForbidden, "only the owner mentions @all")
		}
	}
	now := s.now()
	a := &store.Append{Message: store.Message{
		AppKey: sess.AppKey, ConvID: imapi.SuperConvID(req.To), ConvType: imapi.ConvSuper, MsgID: node.NewID(now), Sender: sess.Account,
		SenderDevice: sess.DeviceType, To: req.To, ClientMsgID: req.ClientMsgID, Type: req.Type,
		Body: req.Body, Mentions: req.Mentions, Time: now.UnixMilli(),
	}, GroupID: req.To, Super: true}
	if err := s.moderate(ctx, sess, a); err != nil {
		return nil, err
	}
	res, err := s.st.AppendMessage(ctx, a)
	if err != nil {
		return nil, node.StoreErr(err, "group")
	}
	msg := imapi.Message{
		MsgID: res.MsgID, ConvID: a.ConvID, ConvType: a.ConvType, From: a.Sender, FromDevice: a.SenderDevice,
		To: a.To, Seq: res.Seq, ClientMsgID: a.ClientMsgID, Type: a.Type, Body: a.Body, Mentions: a.Mentions, Time: res.Time,
	}
	if !res.Duplicate {
		s.n.PushSuper(sess.AppKey, req.To, imapi.OpPush, &msg, sess.SessionID)
	}
	// Side work is queued (again, for a resend: JetStream drops the
	// duplicate, the work is idempotent) before the ack, so that a crash
	// after the commit cannot lose it: the client resends until acked.
	if len(a.Mentions) > 0 || s.hooks != nil {
		j := superJob{AppKey: sess.AppKey, GroupID: req.To, Seq: res.Seq, Mentions: a.Mentions, Sent: now.UnixMilli()}
		if s.hooks != nil || (s.offline != nil && len(a.Mentions) > 0) {
			j.Message = &msg
		}
		if err := s.queueSuper(ctx, &j, res.MsgID); err != nil {
			s.super.m.queueErrs.Inc()
			s.log.Warn("super-group job not queued", "group", req.To, "err", err)
			return nil, imapi.Errorf(imapi.ErrUnavailable, "side work not queued; resend")
		}
	}
	return &imapi.SendAck{MsgID: res.MsgID, ConvID: a.ConvID, Seq: res.Seq, Time: res.Time}, nil
}

func (s *Service) queueSuper(ctx context.Context, j *superJob, msgID string) error {
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

// superGroup loads a live group and checks that the caller is a member.
func (s *Service) superMemberGroup(ctx context.Context, sess *imapi.Session, groupID string) (store.SuperGroup, error) {
	if !imapi.ValidName(groupID) {
		return store.SuperGroup{}, imapi.Errorf(imapi.ErrBadRequest, "group_id: invalid")
	}
	g, err := s.st.SuperGroup(ctx, sess.AppKey, groupID)
	if err != nil {
		return store.SuperGroup{}, node.StoreErr(err, "group")
	}
	ok, err := s.st.IsSuperMember(ctx, sess.AppKey, groupID, sess.Account)
	if err != nil {
		return store.SuperGroup{}, node.StoreErr(err, "group")
	}
	if !ok {
		return store.SuperGroup{}, imapi.Errorf(imapi.ErrForbidden, "not a member of %s", groupID)
	}
	return g, nil
}

func (s *Service) superToAPI(g *store.SuperGroup) *imapi.SuperGroup {
	return &imapi.SuperGroup{GroupID: g.GroupID, Name: g.Name, Owner: g.Owner, Count: g.Count,
		MaxMembers: s.cfg.Super.MaxMembers, LastSeq: g.LastSeq, Created: g.Created.UnixMilli()}
}

// superEvent pushes a membership event to each account's own subject; the
// gateways holding their sessions (un)subscribe the group as they pass.
func (s *Service) superEvent(sess *imapi.Session, accounts []string, groupID, kind string) {
	s.n.PushAll(sess, accounts, imapi.OpSuperEvent, &imapi.SuperEvent{GroupID: groupID, Kind: kind, By: sess.Account})
}

func (s *Service) superBatch(in []string) ([]string, error) {
	out, err := node.Accounts(in, s.cfg.Super.MaxBatch)
	if err != nil {
		s.n.Metrics.Oversize.Inc()
	}
	return out, err
}

func (s *Service) superFull(err error) error {
	if errors.Is(err, store.ErrGroupFull) {
		s.super.m.full.Inc()
		return imapi.Errorf(imapi.ErrGroupFull, "at most %d members", s.cfg.Super.MaxMembers)
	}
	return node.StoreErr(err, "group")
}

func (s *Service) superCreate(ctx context.Context, sess *imapi.Session, body []byte) (any, error) {
	var req imapi.SuperCreateReq
	if err := node.Decode(body, &req); err != nil {
		return nil, err
	}
	if len(req.Name) > 128 {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "name: at most 128 bytes")
	}
	members, err := s.superBatch(append([]string{sess.Account}, req.Members...))
	if err != nil {
		return nil, err
	}
	if err := s.n.RequireUsers(ctx, sess.AppKey, members[1:]); err != nil {
		return nil, err
	}
	now := s.now()
	g := store.SuperGroup{AppKey: sess.AppKey, GroupID: "s" + node.NewID(now), Name: req.Name, Owner: sess.Account, Count: len(members), Created: now}
	if err := s.st.CreateSuperGroup(ctx, g, members, s.cfg.Super.MaxMembers); err != nil {
		return nil, s.superFull(err)
	}
	s.super.m.members.WithLabelValues("added").Add(float64(len(members)))
	s.superEvent(sess, members, g.GroupID, imapi.SuperJoined)
	return s.superToAPI(&g), nil
}

func (s *Service) superAdd(ctx context.Context, sess *imapi.Session, body []byte) (any, error) {
	var req imapi.SuperMembersReq
	if err := node.Decode(body, &req); err != nil {
		return nil, err
	}
	g, err := s.superMemberGroup(ctx, sess, req.GroupID)
	if err != nil {
		return nil, err
	}
	if g.Owner != sess.Account {
		return nil, imapi.Errorf(imapi.ErrForbidden, "only the owner adds members")
	}
	add, err := s.superBatch(req.Members)
	if err != nil {
		return nil, err
	}
	if len(add) == 0 {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "members: required")
	}
	if err := s.n.RequireUsers(ctx, sess.AppKey, add); err != nil {
		return nil, err
	}
	added, count, err := s.st.AddSuperMembers(ctx, sess.AppKey, g.GroupID, add, s.cfg.Super.MaxMembers)
	if err != nil {
		return nil, s.superFull(err)
	}
	s.super.m.members.WithLabelValues("added").Add(float64(len(added)))
	s.superEvent(sess, added, g.GroupID, imapi.SuperJoined)
	return &imapi.SuperMembersResp{Changed: nonNil(added), Count: count}, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (s *Service) superRemove(ctx context.Context, sess *imapi.Session, body []byte) (any, error) {
	var req imapi.SuperMembersReq
	if err := node.Decode(body, &req); err != nil {
		return nil, err
	}
	g, err := s.superMemberGroup(ctx, sess, req.GroupID)
	if err != nil {
		return nil, err
	}
	if g.Owner != sess.Account {
		return nil, imapi.Errorf(imapi.ErrForbidden, "only the owner removes members")
	}
	rm, err := s.superBatch(req.Members)
	if err != nil {
		return nil, err
	}
	if len(rm) == 0 {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "members: required")
	}
	if slices.Contains(rm, g.Owner) {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "the owner cannot be removed; dismiss the group instead")
	}
	removed, count, err := s.st.RemoveSuperMembers(ctx, sess.AppKey, g.GroupID, rm)
	if err != nil {
		return nil, node.StoreErr(err, "group")
	}
	s.super.m.members.WithLabelValues("removed").Add(float64(len(removed)))
	s.superEvent(sess, removed, g.GroupID, imapi.SuperRemoved)
	return &imapi.SuperMembersResp{Changed: nonNil(removed), Count: count}, nil
}

func (s *Service) superInfo(ctx context.Context, sess *imapi.Session, body []byte) (any, error) {
	var req imapi.GroupRef
	if err := node.Decode(body, &req); err != nil {
		return nil, err
	}
	g, err := s.superMemberGroup(ctx, sess, req.GroupID)
	if err != nil {
		return nil, err
	}
	return s.superToAPI(&g), nil
}

func (s *Service) superMembers(ctx context.Context, sess *imapi.Session, body []byte) (any, error) {
	var req imapi.SuperPageReq
	if err := node.Decode(body, &req); err != nil {
		return nil, err
	}
	if _, err := s.superMemberGroup(ctx, sess, req.GroupID); err != nil {
		return nil, err
	}
	if len(req.After) > 64 {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "after: at most 64 bytes")
	}
	limit := req.Limit
	if limit <= 0 {
		limit = s.cfg.DefaultPage
	}
	limit = min(limit, s.cfg.Super.MaxBatch)
	ms, more, err := s.st.SuperMembers(ctx, sess.AppKey, req.GroupID, req.After, limit)
	if err != nil {
		return nil, node.StoreErr(err, "group")
	}
	page := &imapi.SuperPage{Members: nonNil(ms)}
	if more && len(ms) > 0 {
		page.Next = ms[len(ms)-1]
	}
	return page, nil
}

func (s *Service) superList(ctx context.Context, sess *imapi.Session, _ []byte) (any, error) {
	gs, err := s.st.SuperGroupsOf(ctx, sess.AppKey, sess.Account)
	if err != nil {
		return nil, node.StoreErr(err, "groups")
	}
	out := &imapi.SuperListResp{Groups: make([]imapi.SuperGroup, len(gs))}
	for i := range gs {
		out.Groups[i] = *s.superToAPI(&gs[i])
	}
	return out, nil
}

func (s *Service) superLeave(ctx context.Context, sess *imapi.Session, body []byte) (any, error) {
	var req imapi.GroupRef
	if err := node.Decode(body, &req); err != nil {
		return nil, err
	}
	g, err := s.superMemberGroup(ctx, sess, req.GroupID)
	if err != nil {
		return nil, err
	}
	if g.Owner == sess.Account {
		return nil, imapi.Errorf(imapi.ErrForbidden, "the owner cannot leave; dismiss the group instead")
	}
	if _, _, err := s.st.RemoveSuperMembers(ctx, sess.AppKey, g.GroupID, []string{sess.Account}); err != nil {
		return nil, node.StoreErr(err, "group")
	}
	s.super.m.members.WithLabelValues("removed").Inc()
	// The leaver's own sessions (all of them) hear it; so do their gateways.
	s.n.PushAll(&imapi.Session{AppKey: sess.AppKey, Account: sess.Account}, []string{sess.Account}, imapi.OpSuperEvent,
		&imapi.SuperEvent{GroupID: g.GroupID, Kind: imapi.SuperLeft, By: sess.Account})
	return nil, nil
}

func (s *Service) superDismiss(ctx context.Context, sess *imapi.Session, body []byte) (any, error) {
	var req imapi.GroupRef
	if err := node.Decode(body, &req); err != nil {
		return nil, err
	}
	g, err := s.superMemberGroup(ctx, sess, req.GroupID)
	if err != nil {
		return nil, err
	}
	if g.Owner != sess.Account {
		return nil, imapi.Errorf(imapi.ErrForbidden, "only the owner dismisses the group")
	}
	if err := s.st.DismissSuperGroup(ctx, sess.AppKey, g.GroupID); err != nil {
		return nil, node.StoreErr(err, "group")
	}
	// One publish: every gateway holding members tells them and drops the
	// subscription.
	s.n.PushSuper(sess.AppKey, g.GroupID, imapi.OpSuperEvent, &imapi.SuperEvent{GroupID: g.GroupID, Kind: imapi.SuperDismissed, By: sess.Account}, "")
	return nil, nil
}

// readSuper moves the caller's read position in a super-group.
func (s *Service) readSuper(ctx context.Context, sess *imapi.Session, groupID string, seq int64) error {
	if _, err := s.st.MarkSuperRead(ctx, sess.AppKey, groupID, sess.Account, seq); err != nil {
		return node.StoreErr(err, "group")
	}
	return nil
}

// withSuperConversations merges the caller's super-group conversations
// into its conversation list (most recent first, at most limit).
func (s *Service) withSuperConversations(ctx context.Context, sess *imapi.Session, cs []store.ConvState, limit int) ([]store.ConvState, error) {
	sup, err := s.st.SuperConversations(ctx, sess.AppKey, sess.Account, limit)
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
