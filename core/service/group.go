package service

import (
	"context"
	"slices"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/service/internal/node"
	"github.com/longlink/longlink/core/store"
)

// Group events.
const (
	GroupCreated   = "created"
	GroupAdded     = "added"
	GroupRemoved   = "removed"
	GroupLeft      = "left"
	GroupDismissed = "dismissed"
)

func groupToAPI(g *store.Group) *imapi.Group {
	return &imapi.Group{GroupID: g.GroupID, Name: g.Name, Owner: g.Owner, Members: g.Members, Created: g.Created.UnixMilli()}
}

// memberGroup loads a group the caller belongs to.
func (s *Service) memberGroup(ctx context.Context, sess *imapi.Session, groupID string) (store.Group, error) {
	if !imapi.ValidName(groupID) {
		return store.Group{}, imapi.Errorf(imapi.ErrBadRequest, "group_id: invalid")
	}
	g, err := s.st.Group(ctx, sess.AppKey, groupID)
	if err != nil {
		return store.Group{}, node.StoreErr(err, "group")
	}
	if !slices.Contains(g.Members, sess.Account) {
		return store.Group{}, imapi.Errorf(imapi.ErrForbidden, "not a member of %s", groupID)
	}
	return g, nil
}

func (s *Service) groupCreate(ctx context.Context, sess *imapi.Session, body []byte) (any, error) {
	var req imapi.GroupCreateReq
	if err := node.Decode(body, &req); err != nil {
		return nil, err
	}
	if len(req.Name) > 128 {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "name: at most 128 bytes")
	}
	if req.InviteMode == "" {
		req.InviteMode = imapi.GroupInviteAll
	}
	if !validInviteMode(req.InviteMode) {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "invite_mode: %q or %q", imapi.GroupInviteAll, imapi.GroupInviteManagers)
	}
	members, err := node.Accounts(append([]string{sess.Account}, req.Members...), s.cfg.MaxGroupMembers)
	if err != nil {
		return nil, err
	}
	if err := s.n.RequireUsers(ctx, sess.AppKey, members[1:]); err != nil {
		return nil, err
	}
	now := s.now()
	g := store.Group{AppKey: sess.AppKey, GroupID: "g" + node.NewID(now), Name: req.Name, Owner: sess.Account, Members: members, Created: now, InviteMode: req.InviteMode}
	if err := s.st.CreateGroup(ctx, g); err != nil {
		return nil, node.StoreErr(err, "group")
	}
	s.n.PushAll(sess, members, imapi.OpGroupEvent, &imapi.GroupEvent{GroupID: g.GroupID, Kind: GroupCreated, By: sess.Account, Members: members})
	out := groupToAPI(&g)
	out.InviteMode = req.InviteMode
	return out, nil
}

func (s *Service) groupAdd(ctx context.Context, sess *imapi.Session, body []byte) (any, error) {
	var req imapi.GroupMembersReq
	if err := node.Decode(body, &req); err != nil {
		return nil, err
	}
	g, err := s.memberGroup(ctx, sess, req.GroupID)
	if err != nil {
		return nil, err
	}
	if g.Owner != sess.Account {
		m, err := s.st.GroupMeta(ctx, sess.AppKey, g.GroupID)
		if err != nil {
			return nil, node.StoreErr(err, "group")
		}
		if m.InviteMode == imapi.GroupInviteManagers && groupRole(&g, &m, sess.Account) == imapi.GroupRoleMember {
			return nil, imapi.Errorf(imapi.ErrInviteForbidden, "only the owner and managers add members to %s", g.GroupID)
		}
	}
	add, err := node.Accounts(req.Members, s.cfg.MaxGroupMembers)
	if err != nil {
		return nil, err
	}
	if len(add) == 0 {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "members: required")
	}
	if err := s.n.RequireUsers(ctx, sess.AppKey, add); err != nil {
		return nil, err
	}
	fresh := 0
	for _, a := range add {
		if !slices.Contains(g.Members, a) {
			fresh++
		}
	}
	if len(g.Members)+fresh > s.cfg.MaxGroupMembers {
		return nil, imapi.Errorf(imapi.ErrTooLarge, "at most %d members", s.cfg.MaxGroupMembers)
	}
	added, err := s.st.AddMembers(ctx, sess.AppKey, g.GroupID, add)
	if err != nil {
		return nil, node.StoreErr(err, "group")
	}
	if len(added) > 0 {
		all := append(slices.Clip(g.Members), added...)
		s.n.PushAll(sess, all, imapi.OpGroupEvent, &imapi.GroupEvent{GroupID: g.GroupID, Kind: GroupAdded, By: sess.Account, Members: added})
	}
	return nil, nil
}

func (s *Service) groupRemove(ctx context.Context, sess *imapi.Session, body []byte) (any, error) {
	var req imapi.GroupMembersReq
	if err := node.Decode(body, &req); err != nil {
		return nil, err
	}
	g, err := s.memberGroup(ctx, sess, req.GroupID)
	if err != nil {
		return nil, err
	}
	rm, err := node.Accounts(req.Members, s.cfg.MaxGroupMembers)
	if err != nil {
		return nil, err
	}
	if slices.Contains(rm, g.Owner) {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "the owner cannot be removed; dismiss the group instead")
	}
	if g.Owner != sess.Account {
		// Managers remove plain members; members remove nobody.
		m, err := s.st.GroupMeta(ctx, sess.AppKey, g.GroupID)
		if err != nil {
			return nil, node.StoreErr(err, "group")
		}
		if groupRole(&g, &m, sess.Account) != imapi.GroupRoleManager {
			return nil, imapi.Errorf(imapi.ErrForbidden, "only the owner and managers remove members")
		}
		for _, a := range rm {
			if slices.Contains(m.Managers, a) {
				return nil, imapi.Errorf(imapi.ErrForbidden, "only the owner removes managers")
			}
		}
	}
	removed, err := s.st.RemoveMembers(ctx, sess.AppKey, g.GroupID, rm)
	if err != nil {
		return nil, node.StoreErr(err, "group")
	}
	if len(removed) > 0 {
		s.n.PushAll(sess, g.Members, imapi.OpGroupEvent, &imapi.GroupEvent{GroupID: g.GroupID, Kind: GroupRemoved, By: sess.Account, Members: removed})
	}
	return nil, nil
}

func (s *Service) groupInfo(ctx context.Context, sess *imapi.Session, body []byte) (any, error) {
	var req imapi.GroupRef
	if err := node.Decode(body, &req); err != nil {
		return nil, err
	}
	g, err := s.memberGroup(ctx, sess, req.GroupID)
	if err != nil {
		return nil, err
	}
	return s.groupWithMeta(ctx, &g)
}

func (s *Service) groupList(ctx context.Context, sess *imapi.Session, _ []byte) (any, error) {
	gs, err := s.st.GroupsOf(ctx, sess.AppKey, sess.Account)
	if err != nil {
		return nil, node.StoreErr(err, "groups")
	}
	out := &imapi.GroupListResp{Groups: make([]imapi.Group, len(gs))}
	for i := range gs {
		out.Groups[i] = *groupToAPI(&gs[i])
	}
	return out, nil
}

func (s *Service) groupLeave(ctx context.Context, sess *imapi.Session, body []byte) (any, error) {
	var req imapi.GroupRef
	if err := node.Decode(body, &req); err != nil {
		return nil, err
	}
	g, err := s.memberGroup(ctx, sess, req.GroupID)
	if err != nil {
		return nil, err
	}
	if g.Owner == sess.Account {
		return nil, imapi.Errorf(imapi.ErrForbidden, "the owner cannot leave; dismiss the group instead")
	}
	if _, err := s.st.RemoveMembers(ctx, sess.AppKey, g.GroupID, []string{sess.Account}); err != nil {
		return nil, node.StoreErr(err, "group")
	}
	s.n.PushAll(sess, g.Members, imapi.OpGroupEvent, &imapi.GroupEvent{GroupID: g.GroupID, Kind: GroupLeft, By: sess.Account, Members: []string{sess.Account}})
	return nil, nil
}

func (s *Service) groupDismiss(ctx context.Context, sess *imapi.Session, body []byte) (any, error) {
	var req imapi.GroupRef
	if err := node.Decode(body, &req); err != nil {
		return nil, err
	}
	g, err := s.memberGroup(ctx, sess, req.GroupID)
	if err != nil {
		return nil, err
	}
	if g.Owner != sess.Account {
		return nil, imapi.Errorf(imapi.ErrForbidden, "only the owner dismisses the group")
	}
	if err := s.st.DismissGroup(ctx, sess.AppKey, g.GroupID); err != nil {
		return nil, node.StoreErr(err, "group")
	}
	s.n.PushAll(sess, g.Members, imapi.OpGroupEvent, &imapi.GroupEvent{GroupID: g.GroupID, Kind: GroupDismissed, By: sess.Account})
	return nil, nil
}
