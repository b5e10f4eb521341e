package service

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"unicode/utf8"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/service/internal/node"
	"github.com/longlink/longlink/core/store"
)

// Group profile, roles and ownership (imapi/grouprole.go).

// Group events of this file.
const (
	GroupUpdated     = "updated"
	GroupRole        = "role"
	GroupTransferred = "transferred"
)

// groupRole is account's role in g (given its meta).
func groupRole(g *store.Group, m *store.GroupMeta, account string) string {
	switch {
	case g.Owner == account:
		return imapi.GroupRoleOwner
	case slices.Contains(m.Managers, account):
		return imapi.GroupRoleManager
	}
	return imapi.GroupRoleMember
}

func validInviteMode(m string) bool {
	return m == imapi.GroupInviteAll || m == imapi.GroupInviteManagers
}

// groupWithMeta is g with its roles and profile, as group.info answers.
func (s *Service) groupWithMeta(ctx context.Context, g *store.Group) (*imapi.Group, error) {
	m, err := s.st.GroupMeta(ctx, g.AppKey, g.GroupID)
	if err != nil {
		return nil, node.StoreErr(err, "group")
	}
	out := groupToAPI(g)
	out.Managers, out.Announcement, out.Avatar, out.AnyoneUpdates, out.InviteMode = m.Managers, m.Announcement, m.Avatar, m.AnyoneUpdates, m.InviteMode
	return out, nil
}

func validGroupUpdate(req *imapi.GroupUpdateReq) (store.GroupUpdate, error) {
	upd := store.GroupUpdate{Name: req.Name, Announcement: req.Announcement, Avatar: req.Avatar, AnyoneUpdates: req.AnyoneUpdates, InviteMode: req.InviteMode}
	if req.Name == nil && req.Announcement == nil && req.Avatar == nil && req.AnyoneUpdates == nil && req.InviteMode == nil {
		return upd, imapi.Errorf(imapi.ErrBadRequest, "nothing to update: name, announcement, avatar, anyone_updates or invite_mode")
	}
	if req.InviteMode != nil && !validInviteMode(*req.InviteMode) {
		return upd, imapi.Errorf(imapi.ErrBadRequest, "invite_mode: %q or %q", imapi.GroupInviteAll, imapi.GroupInviteManagers)
	}
	for _, f := range []struct {
		name string
		v    *string
		max  int
	}{{"name", req.Name, imapi.MaxGroupName}, {"announcement", req.Announcement, imapi.MaxGroupAnnouncement}, {"avatar", req.Avatar, imapi.MaxGroupAvatar}} {
		if f.v == nil {
			continue
		}
		if len(*f.v) > f.max {
			return upd, imapi.Errorf(imapi.ErrTooLarge, "%s: at most %d bytes", f.name, f.max)
		}
		if !utf8.ValidString(*f.v) {
			return upd, imapi.Errorf(imapi.ErrBadRequest, "%s: not UTF-8", f.name)
		}
	}
	if req.Avatar != nil && *req.Avatar != "" {
		u, err := url.Parse(*req.Avatar)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return upd, imapi.Errorf(imapi.ErrBadRequest, "avatar: want an http or https URL")
		}
	}
	return upd, nil
}

func (s *Service) groupUpdate(ctx context.Context, sess *imapi.Session, body []byte) (any, error) {
	var req imapi.GroupUpdateReq
	if err := node.Decode(body, &req); err != nil {
		return nil, err
	}
	upd, err := validGroupUpdate(&req)
	if err != nil {
		return nil, err
	}
	g, err := s.memberGroup(ctx, sess, req.GroupID)
	if err != nil {
		return nil, err
	}
	m, err := s.st.GroupMeta(ctx, sess.AppKey, g.GroupID)
	if err != nil {
		return nil, node.StoreErr(err, "group")
	}
	// anyone_updates lets members change the profile, never the rules.
	if groupRole(&g, &m, sess.Account) == imapi.GroupRoleMember && (!m.AnyoneUpdates || req.AnyoneUpdates != nil || req.InviteMode != nil) {
		return nil, imapi.Errorf(imapi.ErrForbidden, "only the owner and managers update the group")
	}
	if err := s.st.UpdateGroup(ctx, sess.AppKey, g.GroupID, upd); err != nil {
		return nil, node.StoreErr(err, "group")
	}
	if g, err = s.st.Group(ctx, sess.AppKey, g.GroupID); err != nil {
		return nil, node.StoreErr(err, "group")
	}
	out, err := s.groupWithMeta(ctx, &g)
	if err != nil {
		return nil, err
	}
	ev := *out
	ev.Members = nil
	s.n.PushAll(sess, g.Members, imapi.OpGroupEvent, &imapi.GroupEvent{GroupID: g.GroupID, Kind: GroupUpdated, By: sess.Account, Group: &ev})
	return out, nil
}

func (s *Service) groupSetRole(ctx context.Context, sess *imapi.Session, body []byte) (any, error) {
	var req imapi.GroupRoleReq
	if err := node.Decode(body, &req); err != nil {
		return nil, err
	}
	role := store.RoleMember
	switch req.Role {
	case imapi.GroupRoleManager:
		role = store.RoleManager
	case imapi.GroupRoleMember:
	default:
		return nil, imapi.Errorf(imapi.ErrBadRequest, "role: manager or member")
	}
	if !imapi.ValidName(req.Account) {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "account: want 1-64 of A-Z a-z 0-9 _ -")
	}
	g, err := s.memberGroup(ctx, sess, req.GroupID)
	if err != nil {
		return nil, err
	}
	if g.Owner != sess.Account {
		return nil, imapi.Errorf(imapi.ErrForbidden, "only the owner names managers")
	}
	if req.Account == g.Owner {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "the owner's role does not change; transfer the group instead")
	}
	changed, err := s.st.SetGroupRole(ctx, sess.AppKey, g.GroupID, req.Account, role)
	if errors.Is(err, store.ErrForbidden) {
		return nil, imapi.Errorf(imapi.ErrNotFound, "%s is not a member", req.Account)
	} else if err != nil {
		return nil, node.StoreErr(err, "group")
	}
	if changed {
		s.n.PushAll(sess, g.Members, imapi.OpGroupEvent, &imapi.GroupEvent{GroupID: g.GroupID, Kind: GroupRole, By: sess.Account, Members: []string{req.Account}, Role: req.Role})
	}
	return nil, nil
}

func (s *Service) groupTransfer(ctx context.Context, sess *imapi.Session, body []byte) (any, error) {
	var req imapi.GroupTransferReq
	if err := node.Decode(body, &req); err != nil {
		return nil, err
	}
	if !imapi.ValidName(req.Account) {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "account: want 1-64 of A-Z a-z 0-9 _ -")
	}
	g, err := s.memberGroup(ctx, sess, req.GroupID)
	if err != nil {
		return nil, err
	}
	if g.Owner != sess.Account {
		return nil, imapi.Errorf(imapi.ErrForbidden, "only the owner transfers the group")
	}
	if req.Account == sess.Account {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "account: already the owner")
	}
	if !slices.Contains(g.Members, req.Account) {
		return nil, imapi.Errorf(imapi.ErrNotFound, "%s is not a member", req.Account)
	}
	if err := s.st.TransferGroup(ctx, sess.AppKey, g.GroupID, sess.Account, req.Account); err != nil {
		if errors.Is(err, store.ErrForbidden) {
			return nil, imapi.Errorf(imapi.ErrConflict, "the group changed; try again")
		}
		return nil, node.StoreErr(err, "group")
	}
	s.n.PushAll(sess, g.Members, imapi.OpGroupEvent, &imapi.GroupEvent{GroupID: g.GroupID, Kind: GroupTransferred, By: sess.Account, Members: []string{req.Account}})
	return nil, nil
}
