package serverapi

import (
	"context"
	"net/http"
	"strings"

	"github.com/longlink/longlink/core/imapi"
)

// Profiles, friends, blacklists (through the services, so that every
// device concerned gets its notices) and group update, roles and transfer
// (over the bus as the acting account, like the other group routes).

// FriendsImportReq makes the path's account friends with each of Friends,
// without requests.
type FriendsImportReq struct {
	Friends []string `json:"friends"`
}

// FriendsImportResp lists the accounts that were not friends before.
type FriendsImportResp struct {
	Added []string `json:"added"`
}

// GroupUpdateReq changes a group, acting as As.
type GroupUpdateReq struct {
	As            string  `json:"as"`
	Name          *string `json:"name,omitempty"`
	Announcement  *string `json:"announcement,omitempty"`
	Avatar        *string `json:"avatar,omitempty"`
	AnyoneUpdates *bool   `json:"anyone_updates,omitempty"`
	InviteMode    *string `json:"invite_mode,omitempty"`
}

// GroupRoleReq sets Account's role, acting as As (the owner).
type GroupRoleReq struct {
	As      string `json:"as"`
	Account string `json:"account"`
	Role    string `json:"role"`
}

// GroupTransferReq hands the group to Account, acting as As (the owner).
type GroupTransferReq struct {
	As      string `json:"as"`
	Account string `json:"account"`
}

func (s *Server) routeRelations() {
	s.Handle(http.MethodGet, "/v1/profiles", s.profiles)
	s.Handle(http.MethodPatch, "/v1/users/{account}/profile", s.updateProfile)
	s.Handle(http.MethodGet, "/v1/users/{account}/friends", s.friends)
	s.Handle(http.MethodPost, "/v1/users/{account}/friends", s.importFriends)
	s.Handle(http.MethodGet, "/v1/users/{account}/blacklist", s.blacklist)
	s.Handle(http.MethodPost, "/v1/users/{account}/blacklist", s.setBlocked(true))
	s.Handle(http.MethodPost, "/v1/users/{account}/blacklist/remove", s.setBlocked(false))
	s.Handle(http.MethodPatch, "/v1/groups/{group_id}", s.groupUpdate)
	s.Handle(http.MethodPost, "/v1/groups/{group_id}/roles", s.groupRole)
	s.Handle(http.MethodPost, "/v1/groups/{group_id}/transfer", s.groupTransfer)
}

// existingAccount is the path's account, which must exist.
func (s *Server) existingAccount(ctx context.Context, r *Request) (string, error) {
	a, err := pathAccount(r)
	if err != nil {
		return "", err
	}
	if _, err := s.deps.Store.User(ctx, r.App.AppKey, a); err != nil {
		return "", mapStore(err, "user")
	}
	return a, nil
}

func (s *Server) profiles(ctx context.Context, r *Request) (any, error) {
	q := r.HTTP.URL.Query().Get("accounts")
	if q == "" {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "accounts: a comma-separated list is required")
	}
	return s.deps.Service.Users().Profiles(ctx, r.App.AppKey, strings.Split(q, ","))
}

func (s *Server) updateProfile(ctx context.Context, r *Request) (any, error) {
	a, err := pathAccount(r)
	if err != nil {
		return nil, err
	}
	var req imapi.ProfileUpdateReq
	if err := decodeJSON(r.Body, &req); err != nil {
		return nil, err
	}
	return s.deps.Service.Users().UpdateProfile(ctx, r.App.AppKey, a, &req)
}

func (s *Server) friends(ctx context.Context, r *Request) (any, error) {
	a, err := s.existingAccount(ctx, r)
	if err != nil {
		return nil, err
	}
	return s.deps.Service.Users().Friends(ctx, r.App.AppKey, a)
}

func (s *Server) importFriends(ctx context.Context, r *Request) (any, error) {
	a, err := pathAccount(r)
	if err != nil {
		return nil, err
	}
	var req FriendsImportReq
	if err := decodeJSON(r.Body, &req); err != nil {
		return nil, err
	}
	if len(req.Friends) == 0 {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "friends: at least one")
	}
	added, err := s.deps.Service.Users().ImportFriends(ctx, r.App.AppKey, a, req.Friends)
	if err != nil {
		return nil, err
	}
	return &FriendsImportResp{Added: added}, nil
}

func (s *Server) blacklist(ctx context.Context, r *Request) (any, error) {
	a, err := s.existingAccount(ctx, r)
	if err != nil {
		return nil, err
	}
	return s.deps.Service.Users().Blacklist(ctx, r.App.AppKey, a)
}

func (s *Server) setBlocked(on bool) HandlerFunc {
	return func(ctx context.Context, r *Request) (any, error) {
		a, err := s.existingAccount(ctx, r)
		if err != nil {
			return nil, err
		}
		var req imapi.AccountRef
		if err := decodeJSON(r.Body, &req); err != nil {
			return nil, err
		}
		return nil, s.deps.Service.Users().SetBlocked(ctx, r.App.AppKey, a, req.Account, on)
	}
}

func (s *Server) groupUpdate(ctx context.Context, r *Request) (any, error) {
	var req GroupUpdateReq
	gid, sess, err := s.groupRequest(ctx, r, &req, &req.As)
	if err != nil {
		return nil, err
	}
	var g imapi.Group
	err = s.busCall(ctx, sess, imapi.OpGroupUpdate, &imapi.GroupUpdateReq{
		GroupID: gid, Name: req.Name, Announcement: req.Announcement, Avatar: req.Avatar, AnyoneUpdates: req.AnyoneUpdates, InviteMode: req.InviteMode,
	}, &g)
	if err != nil {
		return nil, err
	}
	return &g, nil
}

func (s *Server) groupRole(ctx context.Context, r *Request) (any, error) {
	var req GroupRoleReq
	gid, sess, err := s.groupRequest(ctx, r, &req, &req.As)
	if err != nil {
		return nil, err
	}
	return nil, s.busCall(ctx, sess, imapi.OpGroupRole, &imapi.GroupRoleReq{GroupID: gid, Account: req.Account, Role: req.Role}, nil)
}

func (s *Server) groupTransfer(ctx context.Context, r *Request) (any, error) {
	var req GroupTransferReq
	gid, sess, err := s.groupRequest(ctx, r, &req, &req.As)
	if err != nil {
		return nil, err
	}
	return nil, s.busCall(ctx, sess, imapi.OpGroupTransfer, &imapi.GroupTransferReq{GroupID: gid, Account: req.Account}, nil)
}
