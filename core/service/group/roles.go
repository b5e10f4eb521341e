package group

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"unicode/utf8"

	"github.com/longlink/longlink/core/imapi"

	"github.com/longlink/longlink/core/internal/buswire"
	"github.com/longlink/longlink/core/service/internal/node"
	"github.com/longlink/longlink/core/store"
)

// An ordinary group's profile, roles and ownership (imapi grouprole.go).

// role is account's role in g (given its meta).
func role(g *store.Group, m *store.GroupMeta, account string) string {
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

// withMeta is g with its roles and profile, as group.info answers.
func (o ordinary) withMeta(ctx context.Context, g *store.Group) (*imapi.Group, error) {
	m, err := o.n.Store.GroupMeta(ctx, g.AppKey, g.GroupID)
	if err != nil {
		return nil, node.StoreErr(err, "group")
	}
	out := toAPI(g)
	out.Managers, out.Announcement, out.Avatar, out.AnyoneUpdates, out.InviteMode = m.Managers, m.Announcement, m.Avatar, m.AnyoneUpdates, m.InviteMode
	return out, nil
}

func validUpdate(req *imapi.GroupUpdateReq) (store.GroupUpdate, error) {
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

func (o ordinary) update(ctx context.Context, sess *buswire.Session, body []byte) (any, error) {
	var req imapi.GroupUpdateReq
	if err := node.Decode(body, &req); err != nil {
		return nil, err
	}
	upd, err := validUpdate(&req)
	if err != nil {
		return nil, err
	}
	g, err := o.load(ctx, sess, req.GroupID)
	if err != nil {
		return nil, err
	}
	m, err := o.n.Store.GroupMeta(ctx, sess.AppKey, g.GroupID)
	if err != nil {
		return nil, node.StoreErr(err, "group")
	}
	// anyone_updates lets members change the profile, never the rules.
	if role(&g, &m, sess.Account) == imapi.GroupRoleMember && (!m.AnyoneUpdates || req.AnyoneUpdates != nil || req.InviteMode != nil) {
		return nil, imapi.Errorf(imapi.ErrForbidden, "only the owner and managers update the group")
	}
	if err := o.n.Store.UpdateGroup(ctx, sess.AppKey, g.GroupID, upd); err != nil {
		return nil, node.StoreErr(err, "group")
	}
	if g, err = o.n.Store.Group(ctx, sess.AppKey, g.GroupID); err != nil {
		return nil, node.StoreErr(err, "group")
	}
	out, err := o.withMeta(ctx, &g)
	if err != nil {
		return nil, err
	}
	ev := *out
	ev.Members = nil
	o.tell(sess, g.Members, &imapi.GroupEvent{GroupID: g.GroupID, Kind: GroupUpdated, Group: &ev})
	return out, nil
}

func (o ordinary) setRole(ctx context.Context, sess *buswire.Session, body []byte) (any, error) {
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
	g, err := o.load(ctx, sess, req.GroupID)
	if err != nil {
		return nil, err
	}
	if err := mustOwn(sess, g.Owner, "names managers"); err != nil {
		return nil, err
	}
	if req.Account == g.Owner {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "the owner's role does not change; transfer the group instead")
	}
	changed, err := o.n.Store.SetGroupRole(ctx, sess.AppKey, g.GroupID, req.Account, role)
	if errors.Is(err, store.ErrForbidden) {
		return nil, imapi.Errorf(imapi.ErrNotFound, "%s is not a member", req.Account)
	} else if err != nil {
		return nil, node.StoreErr(err, "group")
	}
	if changed {
		o.tell(sess, g.Members, &imapi.GroupEvent{GroupID: g.GroupID, Kind: GroupRole, Members: []string{req.Account}, Role: req.Role})
	}
	return nil, nil
}

func (o ordinary) transfer(ctx context.Context, sess *buswire.Session, body []byte) (any, error) {
	var req imapi.GroupTransferReq
	if err := node.Decode(body, &req); err != nil {
		return nil, err
	}
	if !imapi.ValidName(req.Account) {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "account: want 1-64 of A-Z a-z 0-9 _ -")
	}
	g, err := o.load(ctx, sess, req.GroupID)
	if err != nil {
		return nil, err
	}
	if err := mustOwn(sess, g.Owner, "transfers the group"); err != nil {
		return nil, err
	}
	if req.Account == sess.Account {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "account: already the owner")
	}
	if !slices.Contains(g.Members, req.Account) {
		return nil, imapi.Errorf(imapi.ErrNotFound, "%s is not a member", req.Account)
	}
	if err := o.n.Store.TransferGroup(ctx, sess.AppKey, g.GroupID, sess.Account, req.Account); err != nil {
		if errors.Is(err, store.ErrForbidden) {
			return nil, imapi.Errorf(imapi.ErrConflict, "the group changed; try again")
		}
		return nil, node.StoreErr(err, "group")
	}
	o.tell(sess, g.Members, &imapi.GroupEvent{GroupID: g.GroupID, Kind: GroupTransferred, Members: []string{req.Account}})
	return nil, nil
}
