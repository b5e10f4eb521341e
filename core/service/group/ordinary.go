package group

import (
	"context"
	"slices"

	"github.com/longlink/longlink/core/imapi"

	"github.com/longlink/longlink/core/internal/buswire"
	"github.com/longlink/longlink/core/service/internal/node"
	"github.com/longlink/longlink/core/store"
)

// ordinary is the kind of ordinary groups: every member is listed, every
// change is told to every member (group.event), owner and managers manage
// (roles.go).
type ordinary struct {
	n          *node.Node
	maxMembers int
}

func toAPI(g *store.Group) *imapi.Group {
	return &imapi.Group{GroupID: g.GroupID, Name: g.Name, Owner: g.Owner, Members: g.Members, Created: g.Created.UnixMilli()}
}

func (o ordinary) owner(g *store.Group) string { return g.Owner }

func (o ordinary) load(ctx context.Context, sess *buswire.Session, groupID string) (store.Group, error) {
	if !imapi.ValidName(groupID) {
		return store.Group{}, imapi.Errorf(imapi.ErrBadRequest, "group_id: invalid")
	}
	g, err := o.n.Store.Group(ctx, sess.AppKey, groupID)
	if err != nil {
		return store.Group{}, node.StoreErr(err, "group")
	}
	if !slices.Contains(g.Members, sess.Account) {
		return store.Group{}, imapi.Errorf(imapi.ErrForbidden, "not a member of %s", groupID)
	}
	return g, nil
}

func (o ordinary) batch(accounts []string) ([]string, error) {
	return node.Accounts(accounts, o.maxMembers)
}

// tell pushes a group event to accounts (the acting session excepted).
func (o ordinary) tell(sess *buswire.Session, accounts []string, ev *imapi.GroupEvent) {
	ev.By = sess.Account
	o.n.PushAll(sess, accounts, imapi.OpGroupEvent, ev)
}

func (o ordinary) create(ctx context.Context, sess *buswire.Session, req *imapi.GroupCreateReq, members []string) (any, error) {
	if req.InviteMode == "" {
		req.InviteMode = imapi.GroupInviteAll
	}
	if !validInviteMode(req.InviteMode) {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "invite_mode: %q or %q", imapi.GroupInviteAll, imapi.GroupInviteManagers)
	}
	now := o.n.Now()
	g := store.Group{AppKey: sess.AppKey, GroupID: "g" + node.NewID(now), Name: req.Name, Owner: sess.Account, Members: members, Created: now, InviteMode: req.InviteMode}
	if err := o.n.Store.CreateGroup(ctx, g); err != nil {
		return nil, node.StoreErr(err, "group")
	}
	o.tell(sess, members, &imapi.GroupEvent{GroupID: g.GroupID, Kind: GroupCreated, Members: members})
	out := toAPI(&g)
	out.InviteMode = req.InviteMode
	return out, nil
}

// mayAdd: anyone in a group of invite mode "all", the owner and managers
// in one of "managers".
func (o ordinary) mayAdd(ctx context.Context, sess *buswire.Session, g *store.Group) error {
	if g.Owner == sess.Account {
		return nil
	}
	m, err := o.n.Store.GroupMeta(ctx, sess.AppKey, g.GroupID)
	if err != nil {
		return node.StoreErr(err, "group")
	}
	if m.InviteMode == imapi.GroupInviteManagers && role(g, &m, sess.Account) == imapi.GroupRoleMember {
		return imapi.Errorf(imapi.ErrInviteForbidden, "only the owner and managers add members to %s", g.GroupID)
	}
	return nil
}

func (o ordinary) add(ctx context.Context, sess *buswire.Session, g *store.Group, accounts []string) (any, error) {
	fresh := 0
	for _, a := range accounts {
		if !slices.Contains(g.Members, a) {
			fresh++
		}
	}
	if len(g.Members)+fresh > o.maxMembers {
		return nil, imapi.Errorf(imapi.ErrTooLarge, "at most %d members", o.maxMembers)
	}
	added, err := o.n.Store.AddMembers(ctx, sess.AppKey, g.GroupID, accounts)
	if err != nil {
		return nil, node.StoreErr(err, "group")
	}
	if len(added) > 0 {
		all := append(slices.Clip(g.Members), added...)
		o.tell(sess, all, &imapi.GroupEvent{GroupID: g.GroupID, Kind: GroupAdded, Members: added})
	}
	return nil, nil
}

// remove: the owner removes anyone, managers remove plain members, members
// remove nobody.
func (o ordinary) remove(ctx context.Context, sess *buswire.Session, g *store.Group, accounts []string) (any, error) {
	if g.Owner != sess.Account {
		m, err := o.n.Store.GroupMeta(ctx, sess.AppKey, g.GroupID)
		if err != nil {
			return nil, node.StoreErr(err, "group")
		}
		if role(g, &m, sess.Account) != imapi.GroupRoleManager {
			return nil, imapi.Errorf(imapi.ErrForbidden, "only the owner and managers remove members")
		}
		for _, a := range accounts {
			if slices.Contains(m.Managers, a) {
				return nil, imapi.Errorf(imapi.ErrForbidden, "only the owner removes managers")
			}
		}
	}
	removed, err := o.n.Store.RemoveMembers(ctx, sess.AppKey, g.GroupID, accounts)
	if err != nil {
		return nil, node.StoreErr(err, "group")
	}
	if len(removed) > 0 {
		o.tell(sess, g.Members, &imapi.GroupEvent{GroupID: g.GroupID, Kind: GroupRemoved, Members: removed})
	}
	return nil, nil
}

func (o ordinary) leave(ctx context.Context, sess *buswire.Session, g *store.Group) error {
	if _, err := o.n.Store.RemoveMembers(ctx, sess.AppKey, g.GroupID, []string{sess.Account}); err != nil {
		return node.StoreErr(err, "group")
	}
	o.tell(sess, g.Members, &imapi.GroupEvent{GroupID: g.GroupID, Kind: GroupLeft, Members: []string{sess.Account}})
	return nil
}

func (o ordinary) dismiss(ctx context.Context, sess *buswire.Session, g *store.Group) error {
	if err := o.n.Store.DismissGroup(ctx, sess.AppKey, g.GroupID); err != nil {
		return node.StoreErr(err, "group")
	}
	o.tell(sess, g.Members, &imapi.GroupEvent{GroupID: g.GroupID, Kind: GroupDismissed})
	return nil
}

func (o ordinary) info(ctx context.Context, g *store.Group) (any, error) {
	return o.withMeta(ctx, g)
}

func (o ordinary) list(ctx context.Context, sess *buswire.Session) (any, error) {
	gs, err := o.n.Store.GroupsOf(ctx, sess.AppKey, sess.Account)
	if err != nil {
		return nil, node.StoreErr(err, "groups")
	}
	out := &imapi.GroupListResp{Groups: make([]imapi.Group, len(gs))}
	for i := range gs {
		out.Groups[i] = *toAPI(&gs[i])
	}
	return out, nil
}
