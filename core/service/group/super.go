package group

import (
	"context"
	"errors"

	"github.com/longlink/longlink/core/imapi"

	"github.com/longlink/longlink/core/internal/buswire"
	"github.com/longlink/longlink/core/service/internal/node"
	"github.com/longlink/longlink/core/store"
)

// super is the kind of super-groups (read diffusion, core/imapi
// supergroup.go): members are paged, not listed; only the owner adds and
// removes them, in batches; a membership event goes to the accounts it
// concerns only (their gateways subscribe or unsubscribe the group's
// subject as it passes), a dismissal once on the group's subject.
type super struct {
	n       *node.Node
	cfg     SuperConfig
	metrics *metrics
}

func (s super) toAPI(g *store.SuperGroup) *imapi.SuperGroup {
	return &imapi.SuperGroup{GroupID: g.GroupID, Name: g.Name, Owner: g.Owner, Count: g.Count,
		MaxMembers: s.cfg.MaxMembers, LastSeq: g.LastSeq, Created: g.Created.UnixMilli()}
}

func (s super) owner(g *store.SuperGroup) string { return g.Owner }

func (s super) load(ctx context.Context, sess *buswire.Session, groupID string) (store.SuperGroup, error) {
	if !imapi.ValidName(groupID) {
		return store.SuperGroup{}, imapi.Errorf(imapi.ErrBadRequest, "group_id: invalid")
	}
	g, err := s.n.Store.SuperGroup(ctx, sess.AppKey, groupID)
	if err != nil {
		return store.SuperGroup{}, node.StoreErr(err, "group")
	}
	ok, err := s.n.Store.IsSuperMember(ctx, sess.AppKey, groupID, sess.Account)
	if err != nil {
		return store.SuperGroup{}, node.StoreErr(err, "group")
	}
	if !ok {
		return store.SuperGroup{}, imapi.Errorf(imapi.ErrForbidden, "not a member of %s", groupID)
	}
	return g, nil
}

func (s super) batch(accounts []string) ([]string, error) {
	out, err := node.Accounts(accounts, s.cfg.MaxBatch)
	if err != nil {
		s.n.Metrics.Oversize.Inc()
	}
	return out, err
}

// tell pushes a membership event to each account's own subject.
func (s super) tell(sess *buswire.Session, accounts []string, groupID, kind string) {
	s.n.PushAll(sess, accounts, imapi.OpSuperEvent, &imapi.SuperEvent{GroupID: groupID, Kind: kind, By: sess.Account})
}

// full maps the store's member limit to ErrGroupFull.
func (s super) full(err error) error {
	if errors.Is(err, store.ErrGroupFull) {
		s.metrics.full.Inc()
		return imapi.Errorf(imapi.ErrGroupFull, "at most %d members", s.cfg.MaxMembers)
	}
	return node.StoreErr(err, "group")
}

func (s super) create(ctx context.Context, sess *buswire.Session, req *imapi.GroupCreateReq, members []string) (any, error) {
	now := s.n.Now()
	g := store.SuperGroup{AppKey: sess.AppKey, GroupID: "s" + node.NewID(now), Name: req.Name, Owner: sess.Account, Count: len(members), Created: now}
	if err := s.n.Store.CreateSuperGroup(ctx, g, members, s.cfg.MaxMembers); err != nil {
		return nil, s.full(err)
	}
	s.metrics.members.WithLabelValues("added").Add(float64(len(members)))
	s.tell(sess, members, g.GroupID, imapi.SuperJoined)
	return s.toAPI(&g), nil
}

func (s super) mayAdd(_ context.Context, sess *buswire.Session, g *store.SuperGroup) error {
	return mustOwn(sess, g.Owner, "adds members")
}

func (s super) add(ctx context.Context, sess *buswire.Session, g *store.SuperGroup, accounts []string) (any, error) {
	added, count, err := s.n.Store.AddSuperMembers(ctx, sess.AppKey, g.GroupID, accounts, s.cfg.MaxMembers)
	if err != nil {
		return nil, s.full(err)
	}
	s.metrics.members.WithLabelValues("added").Add(float64(len(added)))
	s.tell(sess, added, g.GroupID, imapi.SuperJoined)
	return &imapi.SuperMembersResp{Changed: nonNil(added), Count: count}, nil
}

func (s super) remove(ctx context.Context, sess *buswire.Session, g *store.SuperGroup, accounts []string) (any, error) {
	if err := mustOwn(sess, g.Owner, "removes members"); err != nil {
		return nil, err
	}
	if len(accounts) == 0 {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "members: required")
	}
	removed, count, err := s.n.Store.RemoveSuperMembers(ctx, sess.AppKey, g.GroupID, accounts)
	if err != nil {
		return nil, node.StoreErr(err, "group")
	}
	s.metrics.members.WithLabelValues("removed").Add(float64(len(removed)))
	s.tell(sess, removed, g.GroupID, imapi.SuperRemoved)
	return &imapi.SuperMembersResp{Changed: nonNil(removed), Count: count}, nil
}

func (s super) leave(ctx context.Context, sess *buswire.Session, g *store.SuperGroup) error {
	if _, _, err := s.n.Store.RemoveSuperMembers(ctx, sess.AppKey, g.GroupID, []string{sess.Account}); err != nil {
		return node.StoreErr(err, "group")
	}
	s.metrics.members.WithLabelValues("removed").Inc()
	// The leaver's own sessions (all of them) hear it; so do their gateways.
	s.tell(&buswire.Session{AppKey: sess.AppKey, Account: sess.Account}, []string{sess.Account}, g.GroupID, imapi.SuperLeft)
	return nil
}

func (s super) dismiss(ctx context.Context, sess *buswire.Session, g *store.SuperGroup) error {
	if err := s.n.Store.DismissSuperGroup(ctx, sess.AppKey, g.GroupID); err != nil {
		return node.StoreErr(err, "group")
	}
	// One publish: every gateway holding members tells them and drops the
	// subscription.
	s.n.PushSuper(sess.AppKey, g.GroupID, imapi.OpSuperEvent, &imapi.SuperEvent{GroupID: g.GroupID, Kind: imapi.SuperDismissed, By: sess.Account}, "")
	return nil
}

func (s super) info(_ context.Context, g *store.SuperGroup) (any, error) {
	return s.toAPI(g), nil
}

func (s super) list(ctx context.Context, sess *buswire.Session) (any, error) {
	gs, err := s.n.Store.SuperGroupsOf(ctx, sess.AppKey, sess.Account)
	if err != nil {
		return nil, node.StoreErr(err, "groups")
	}
	out := &imapi.SuperListResp{Groups: make([]imapi.SuperGroup, len(gs))}
	for i := range gs {
		out.Groups[i] = *s.toAPI(&gs[i])
	}
	return out, nil
}

// members pages through a super-group's members (super.members).
func (s super) members(ctx context.Context, sess *buswire.Session, body []byte) (any, error) {
	var req imapi.SuperPageReq
	if err := node.Decode(body, &req); err != nil {
		return nil, err
	}
	if _, err := s.load(ctx, sess, req.GroupID); err != nil {
		return nil, err
	}
	if len(req.After) > 64 {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "after: at most 64 bytes")
	}
	limit := req.Limit
	if limit <= 0 {
		limit = s.n.Cfg.DefaultPage
	}
	limit = min(limit, s.cfg.MaxBatch)
	ms, more, err := s.n.Store.SuperMembers(ctx, sess.AppKey, req.GroupID, req.After, limit)
	if err != nil {
		return nil, node.StoreErr(err, "group")
	}
	page := &imapi.SuperPage{Members: nonNil(ms)}
	if more && len(ms) > 0 {
		page.Next = ms[len(ms)-1]
	}
	return page, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
