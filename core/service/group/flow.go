package group

import (
	"context"
	"slices"

	"github.com/longlink/longlink/core/imapi"

	"github.com/longlink/longlink/core/internal/buswire"
	"github.com/longlink/longlink/core/service/internal/dispatch"
	"github.com/longlink/longlink/core/service/internal/node"
)

// kind is what ordinary groups (G = store.Group) and super-groups
// (G = store.SuperGroup) do differently. The flows below hold what they
// share: the request, membership of the caller, the owner's rules, the
// member lists' checks and the store errors.
type kind[G any] interface {
	// load returns a live group of which sess.Account is a member.
	load(ctx context.Context, sess *buswire.Session, groupID string) (G, error)
	owner(g *G) string
	// batch validates and dedupes the accounts named in one request.
	batch(accounts []string) ([]string, error)
	// create stores a group of members (the owner first) and tells them.
	create(ctx context.Context, sess *buswire.Session, req *imapi.GroupCreateReq, members []string) (any, error)
	// mayAdd fails unless sess.Account may add members to g.
	mayAdd(ctx context.Context, sess *buswire.Session, g *G) error
	// add adds existing accounts and tells whom it concerns.
	add(ctx context.Context, sess *buswire.Session, g *G, accounts []string) (any, error)
	// remove checks that sess.Account may remove accounts (the owner is
	// never among them), removes them and tells whom it concerns.
	remove(ctx context.Context, sess *buswire.Session, g *G, accounts []string) (any, error)
	// leave removes sess.Account (not the owner) and tells whom it concerns.
	leave(ctx context.Context, sess *buswire.Session, g *G) error
	// dismiss deletes g (by its owner) and tells its members.
	dismiss(ctx context.Context, sess *buswire.Session, g *G) error
	info(ctx context.Context, g *G) (any, error)
	list(ctx context.Context, sess *buswire.Session) (any, error)
}

// maxGroupName bounds a group's name at creation.
const maxGroupName = 128

func create[G any](n *node.Node, k kind[G]) dispatch.Handler {
	return func(ctx context.Context, sess *buswire.Session, body []byte) (any, error) {
		var req imapi.GroupCreateReq
		if err := node.Decode(body, &req); err != nil {
			return nil, err
		}
		if len(req.Name) > maxGroupName {
			return nil, imapi.Errorf(imapi.ErrBadRequest, "name: at most %d bytes", maxGroupName)
		}
		members, err := k.batch(append([]string{sess.Account}, req.Members...))
		if err != nil {
			return nil, err
		}
		if err := n.RequireUsers(ctx, sess.AppKey, members[1:]); err != nil {
			return nil, err
		}
		return k.create(ctx, sess, &req, members)
	}
}

func addMembers[G any](n *node.Node, k kind[G]) dispatch.Handler {
	return func(ctx context.Context, sess *buswire.Session, body []byte) (any, error) {
		var req imapi.GroupMembersReq
		g, err := named(ctx, k, sess, body, &req, &req.GroupID)
		if err != nil {
			return nil, err
		}
		if err := k.mayAdd(ctx, sess, &g); err != nil {
			return nil, err
		}
		add, err := k.batch(req.Members)
		if err != nil {
			return nil, err
		}
		if len(add) == 0 {
			return nil, imapi.Errorf(imapi.ErrBadRequest, "members: required")
		}
		if err := n.RequireUsers(ctx, sess.AppKey, add); err != nil {
			return nil, err
		}
		return k.add(ctx, sess, &g, add)
	}
}

func removeMembers[G any](k kind[G]) dispatch.Handler {
	return func(ctx context.Context, sess *buswire.Session, body []byte) (any, error) {
		var req imapi.GroupMembersReq
		g, err := named(ctx, k, sess, body, &req, &req.GroupID)
		if err != nil {
			return nil, err
		}
		rm, err := k.batch(req.Members)
		if err != nil {
			return nil, err
		}
		if slices.Contains(rm, k.owner(&g)) {
			return nil, imapi.Errorf(imapi.ErrBadRequest, "the owner cannot be removed; dismiss the group instead")
		}
		return k.remove(ctx, sess, &g, rm)
	}
}

func info[G any](k kind[G]) dispatch.Handler {
	return func(ctx context.Context, sess *buswire.Session, body []byte) (any, error) {
		var req imapi.GroupRef
		g, err := named(ctx, k, sess, body, &req, &req.GroupID)
		if err != nil {
			return nil, err
		}
		return k.info(ctx, &g)
	}
}

func list[G any](k kind[G]) dispatch.Handler {
	return func(ctx context.Context, sess *buswire.Session, _ []byte) (any, error) {
		return k.list(ctx, sess)
	}
}

func leave[G any](k kind[G]) dispatch.Handler {
	return func(ctx context.Context, sess *buswire.Session, body []byte) (any, error) {
		var req imapi.GroupRef
		g, err := named(ctx, k, sess, body, &req, &req.GroupID)
		if err != nil {
			return nil, err
		}
		if k.owner(&g) == sess.Account {
			return nil, imapi.Errorf(imapi.ErrForbidden, "the owner cannot leave; dismiss the group instead")
		}
		return nil, k.leave(ctx, sess, &g)
	}
}

func dismiss[G any](k kind[G]) dispatch.Handler {
	return func(ctx context.Context, sess *buswire.Session, body []byte) (any, error) {
		var req imapi.GroupRef
		g, err := named(ctx, k, sess, body, &req, &req.GroupID)
		if err != nil {
			return nil, err
		}
		if err := mustOwn(sess, k.owner(&g), "dismisses the group"); err != nil {
			return nil, err
		}
		return nil, k.dismiss(ctx, sess, &g)
	}
}

// named decodes a request that names a group (its GroupID field is
// groupID) into req and loads the group for a member.
func named[G any](ctx context.Context, k kind[G], sess *buswire.Session, body []byte, req any, groupID *string) (G, error) {
	if err := node.Decode(body, req); err != nil {
		var none G
		return none, err
	}
	return k.load(ctx, sess, *groupID)
}

// mustOwn fails unless sess.Account owns the group: what only the owner
// may do (what) is in the message.
func mustOwn(sess *buswire.Session, owner, what string) error {
	if owner != sess.Account {
		return imapi.Errorf(imapi.ErrForbidden, "only the owner %s", what)
	}
	return nil
}
