package serverapi

import (
	"context"
	"net/http"
	"strconv"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/store"
)

// MaxUserBatch bounds the accounts of one bulk user creation.
const MaxUserBatch = 1000

// UserBatchReq creates many users at once (members of large groups).
type UserBatchReq struct {
	Users []UserReq `json:"users"`
}

// UserBatchResp lists the accounts created; the others already existed.
// No tokens are issued: POST /v1/users/{account}/tokens issues one.
type UserBatchResp struct {
	Created []string `json:"created"`
}

// SuperCreateReq creates a super-group owned by Owner with up to one batch
// of members (more through /members). It is GroupCreateReq without the
// invite mode (POST /v1/supergroups takes either).
type SuperCreateReq struct {
	Owner   string   `json:"owner"`
	Name    string   `json:"name"`
	Members []string `json:"members,omitempty"`
}

func (s *Server) routeSuperGroups() {
	s.Handle(http.MethodPost, "/v1/users/batch", s.createUsers)
	// The other super-group routes are routeGroups' (superGroups).
	s.Handle(http.MethodGet, "/v1/supergroups/{group_id}/members", s.superMembers)
}

func (s *Server) createUsers(ctx context.Context, r *Request) (any, error) {
	var req UserBatchReq
	if err := decodeJSON(r.Body, &req); err != nil {
		return nil, err
	}
	if len(req.Users) == 0 {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "users: at least one")
	}
	if len(req.Users) > MaxUserBatch {
		s.metrics.oversize.Inc()
		return nil, imapi.Errorf(imapi.ErrTooLarge, "users: at most %d", MaxUserBatch)
	}
	users := make([]store.User, len(req.Users))
	seen := make(map[string]bool, len(req.Users))
	now := s.now()
	for i, u := range req.Users {
		if !imapi.ValidName(u.Account) {
			return nil, imapi.Errorf(imapi.ErrBadRequest, "users[%d].account: want 1-64 of A-Z a-z 0-9 _ -", i)
		}
		if len(u.Name) > 128 {
			return nil, imapi.Errorf(imapi.ErrBadRequest, "users[%d].name: at most 128 bytes", i)
		}
		if seen[u.Account] {
			return nil, imapi.Errorf(imapi.ErrBadRequest, "users[%d].account: %q listed twice", i, u.Account)
		}
		seen[u.Account] = true
		users[i] = store.User{AppKey: r.App.AppKey, Account: u.Account, Name: u.Name, Created: now}
	}
	created, err := s.deps.Store.CreateUsers(ctx, users)
	if err != nil {
		return nil, mapStore(err, "users")
	}
	if created == nil {
		created = []string{}
	}
	return &UserBatchResp{Created: created}, nil
}

func (s *Server) superMembers(ctx context.Context, r *Request) (any, error) {
	gid, err := pathGroup(r)
	if err != nil {
		return nil, err
	}
	q := r.HTTP.URL.Query()
	sess, err := s.actor(ctx, r, "as", q.Get("as"))
	if err != nil {
		return nil, err
	}
	req := imapi.SuperPageReq{GroupID: gid, After: q.Get("after")}
	if v := q.Get("limit"); v != "" {
		if req.Limit, err = strconv.Atoi(v); err != nil || req.Limit < 1 {
			return nil, imapi.Errorf(imapi.ErrBadRequest, "limit: a positive number")
		}
	}
	var page imapi.SuperPage
	if err := s.busCall(ctx, sess, imapi.OpSuperMembers, &req, &page); err != nil {
		return nil, err
	}
	return &page, nil
}
