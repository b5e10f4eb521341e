package serverapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"

	"github.com/longlink/longlink/core/imapi"

	"github.com/longlink/longlink/core/internal/buswire"
	"github.com/longlink/longlink/core/store"
	"github.com/longlink/longlink/core/webhook"
)

// UserReq creates a user.
type UserReq struct {
	Account string `json:"account"`
	Name    string `json:"name,omitempty"`
}

// UserUpdateReq changes a user; absent fields are kept.
type UserUpdateReq struct {
	Name     *string `json:"name,omitempty"`
	Disabled *bool   `json:"disabled,omitempty"`
}

// UserResp describes a user.
type UserResp struct {
	Account  string `json:"account"`
	Name     string `json:"name"`
	Disabled bool   `json:"disabled"`
	Created  int64  `json:"created"` // unix milliseconds
}

// TokenReq issues a token.
type TokenReq struct {
	RevokeOthers bool `json:"revoke_others,omitempty"`
}

// TokenResp carries a token: shown once, stored only as a hash.
type TokenResp struct {
	Account string `json:"account"`
	Token   string `json:"token"`
	Expires int64  `json:"expires"` // unix milliseconds
}

// CreateUserResp is the new user and its first token.
type CreateUserResp struct {
	UserResp
	Token   string `json:"token"`
	Expires int64  `json:"expires"`
}

// SendMessageReq sends a message as the user From.
type SendMessageReq struct {
	From string `json:"from"`
	imapi.SendReq
}

// NotificationReq sends a system notification to an account.
type NotificationReq struct {
	To          string          `json:"to"`
	ClientMsgID string          `json:"client_msg_id"`
	Type        string          `json:"type,omitempty"`
	Body        json.RawMessage `json:"body"`
}

const maxHistoryPage = 200

func (s *Server) routeV1() {
	s.Handle(http.MethodPost, "/v1/users", s.createUser)
	s.Handle(http.MethodGet, "/v1/users/{account}", s.getUser)
	s.Handle(http.MethodPatch, "/v1/users/{account}", s.updateUser)
	s.Handle(http.MethodPost, "/v1/users/{account}/tokens", s.issueToken)
	s.Handle(http.MethodPost, "/v1/messages", s.sendMessage)
	s.Handle(http.MethodPost, "/v1/notifications", s.sendNotification)
	s.Handle(http.MethodPost, "/v1/notifications/batch", s.sendBatchNotification)
	s.Handle(http.MethodGet, "/v1/conversations/{conv_id}/messages", s.history)
	s.routeGroups()
	s.routeRelations()
	s.routeSuperGroups()
	s.routeRooms()
	s.routePush()
	if s.deps.Calls != nil {
		s.Handle(http.MethodPost, "/v1/turn/credentials", func(ctx context.Context, r *Request) (any, error) {
			return s.deps.Calls.IssueForApp(ctx, r.App.AppKey, r.Body)
		})
	}
	if s.deps.DeadLetters != nil {
		s.Handle(http.MethodGet, "/v1/webhooks/dead-letters", s.deadLetters)
		s.Handle(http.MethodPost, "/v1/webhooks/dead-letters/{id}/replay", s.replayDeadLetter)
	}
}

// DeadLettersResp lists webhook events that failed every delivery attempt.
type DeadLettersResp struct {
	DeadLetters []webhook.DeadLetter `json:"dead_letters"`
}

func (s *Server) deadLetters(ctx context.Context, r *Request) (any, error) {
	limit := 100
	if v := r.HTTP.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return nil, imapi.Errorf(imapi.ErrBadRequest, "limit: want 1..1000")
		}
		limit = n
	}
	dl, err := s.deps.DeadLetters.DeadLetters(ctx, r.App.AppKey, limit)
	if err != nil {
		return nil, imapi.Errorf(imapi.ErrUnavailable, "dead letters: %v", err)
	}
	if dl == nil {
		dl = []webhook.DeadLetter{}
	}
	return &DeadLettersResp{DeadLetters: dl}, nil
}

func (s *Server) replayDeadLetter(ctx context.Context, r *Request) (any, error) {
	err := s.deps.DeadLetters.Replay(ctx, r.App.AppKey, r.HTTP.PathValue("id"))
	switch {
	case errors.Is(err, webhook.ErrNotFound):
		return nil, imapi.Errorf(imapi.ErrNotFound, "no such dead letter")
	case err != nil:
		return nil, imapi.Errorf(imapi.ErrUnavailable, "replay: %v", err)
	}
	return struct{}{}, nil
}

// decodeJSON decodes a request body strictly: a field the request does not
// have is refused with the fields it has, and a value of the wrong type
// names its field and the type wanted.
func decodeJSON(body []byte, v any) error {
	if len(body) == 0 {
		return imapi.Errorf(imapi.ErrBadRequest, "body: empty; want a JSON object with %s", strings.Join(jsonFields(reflect.TypeOf(v)), ", "))
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("more than one JSON value")
	}
	if err == nil {
		return nil
	}
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te) && te.Field != "":
		return imapi.Errorf(imapi.ErrBadRequest, "%s: want %s, not a JSON %s", te.Field, jsonKind(te.Type), te.Value)
	case errors.As(err, &se):
		return imapi.Errorf(imapi.ErrBadRequest, "body: not JSON (at byte %d: %v)", se.Offset, se)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return imapi.Errorf(imapi.ErrBadRequest, "body: not JSON (it ends before the value does)")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.TrimPrefix(err.Error(), "json: unknown field ")
		return imapi.Errorf(imapi.ErrBadRequest, "body: unknown field %s; this request takes %s", name, strings.Join(jsonFields(reflect.TypeOf(v)), ", "))
	}
	return imapi.Errorf(imapi.ErrBadRequest, "body: %v", err)
}

// jsonFields lists the JSON names of a request struct's fields (embedded
// structs included).
func jsonFields(t reflect.Type) []string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if f.Anonymous && name == "" {
			out = append(out, jsonFields(f.Type)...)
			continue
		}
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out = append(out, name)
	}
	return out
}

func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return t.String()
}

func pathAccount(r *Request) (string, error) {
	a := r.HTTP.PathValue("account")
	if !imapi.ValidName(a) {
		return "", imapi.Errorf(imapi.ErrBadRequest, "account: want 1-64 of A-Z a-z 0-9 _ -")
	}
	return a, nil
}

func userResp(u store.User) *UserResp {
	return &UserResp{Account: u.Account, Name: u.Name, Disabled: u.Disabled, Created: u.Created.UnixMilli()}
}

func mapStore(err error, what string) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return imapi.Errorf(imapi.ErrNotFound, "%s not found", what)
	case errors.Is(err, store.ErrExists):
		return imapi.Errorf(imapi.ErrConflict, "%s already exists", what)
	}
	return err
}

func (s *Server) createUser(ctx context.Context, r *Request) (any, error) {
	var req UserReq
	if err := decodeJSON(r.Body, &req); err != nil {
		return nil, err
	}
	if !imapi.ValidName(req.Account) {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "account: want 1-64 of A-Z a-z 0-9 _ -")
	}
	if len(req.Name) > 128 {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "name: at most 128 bytes")
	}
	u := store.User{AppKey: r.App.AppKey, Account: req.Account, Name: req.Name, Created: s.now()}
	if err := s.deps.Store.CreateUser(ctx, u); err != nil {
		return nil, mapStore(err, "user")
	}
	tok, exp, err := s.deps.Service.Sessions().IssueToken(ctx, r.App.AppKey, req.Account, false)
	if err != nil {
		return nil, mapStore(err, "user")
	}
	return &CreateUserResp{UserResp: *userResp(u), Token: tok, Expires: exp.UnixMilli()}, nil
}

func (s *Server) getUser(ctx context.Context, r *Request) (any, error) {
	a, err := pathAccount(r)
	if err != nil {
		return nil, err
	}
	u, err := s.deps.Store.User(ctx, r.App.AppKey, a)
	if err != nil {
		return nil, mapStore(err, "user")
	}
	return userResp(u), nil
}

func (s *Server) updateUser(ctx context.Context, r *Request) (any, error) {
	a, err := pathAccount(r)
	if err != nil {
		return nil, err
	}
	var req UserUpdateReq
	if err := decodeJSON(r.Body, &req); err != nil {
		return nil, err
	}
	if req.Name != nil {
		// The name is the profile's: renamed like PATCH …/profile (its
		// limits, a profile.updated notice in the same transaction, the
		// online friends told), so every device and friend sees it.
		if _, err := s.deps.Service.Users().UpdateProfile(ctx, r.App.AppKey, a, &imapi.ProfileUpdateReq{Name: req.Name}); err != nil {
			return nil, err
		}
	}
	u, err := s.deps.Store.UpdateUser(ctx, r.App.AppKey, a, store.UserUpdate{Disabled: req.Disabled})
	if err != nil {
		return nil, mapStore(err, "user")
	}
	if req.Disabled != nil && *req.Disabled {
		s.deps.Service.Sessions().KickAll(r.App.AppKey, a, "account disabled")
	}
	return userResp(u), nil
}

func (s *Server) issueToken(ctx context.Context, r *Request) (any, error) {
	a, err := pathAccount(r)
	if err != nil {
		return nil, err
	}
	var req TokenReq
	if len(r.Body) > 0 {
		if err := decodeJSON(r.Body, &req); err != nil {
			return nil, err
		}
	}
	tok, exp, err := s.deps.Service.Sessions().IssueToken(ctx, r.App.AppKey, a, req.RevokeOthers)
	if err != nil {
		return nil, mapStore(err, "user")
	}
	if req.RevokeOthers {
		s.deps.Service.Sessions().KickAll(r.App.AppKey, a, "token revoked")
	}
	return &TokenResp{Account: a, Token: tok, Expires: exp.UnixMilli()}, nil
}

func (s *Server) sendMessage(ctx context.Context, r *Request) (any, error) {
	var req SendMessageReq
	if err := decodeJSON(r.Body, &req); err != nil {
		return nil, err
	}
	if !imapi.ValidName(req.From) {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "from: want 1-64 of A-Z a-z 0-9 _ -")
	}
	u, err := s.deps.Store.User(ctx, r.App.AppKey, req.From)
	if err != nil {
		return nil, mapStore(err, "sender")
	}
	if u.Disabled {
		return nil, imapi.Errorf(imapi.ErrUserDisabled, "sender is disabled")
	}
	sess := &buswire.Session{AppKey: r.App.AppKey, Account: req.From, DeviceType: "server", Gateway: "serverapi"}
	return s.deps.Service.Messages().Send(ctx, sess, &req.SendReq)
}

func (s *Server) sendNotification(ctx context.Context, r *Request) (any, error) {
	var req NotificationReq
	if err := decodeJSON(r.Body, &req); err != nil {
		return nil, err
	}
	if req.Type == "" {
		req.Type = "system"
	}
	sess := &buswire.Session{AppKey: r.App.AppKey, Account: imapi.SystemAccount, DeviceType: "server", Gateway: "serverapi"}
	return s.deps.Service.Messages().Send(ctx, sess, &imapi.SendReq{
		ConvType: imapi.ConvP2P, To: req.To, ClientMsgID: req.ClientMsgID, Type: req.Type, Body: req.Body,
	})
}

func (s *Server) history(ctx context.Context, r *Request) (any, error) {
	conv := r.HTTP.PathValue("conv_id")
	if _, _, _, ok := imapi.ParseConvID(conv); !ok {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "conv_id: malformed")
	}
	q := r.HTTP.URL.Query()
	var before int64
	limit := 50
	if v := q.Get("before_seq"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return nil, imapi.Errorf(imapi.ErrBadRequest, "before_seq: want a non-negative integer")
		}
		before = n
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return nil, imapi.Errorf(imapi.ErrBadRequest, "limit: want a positive integer")
		}
		limit = min(n, maxHistoryPage)
	}
	ms, more, err := s.deps.Store.History(ctx, r.App.AppKey, conv, before, limit)
	if err != nil {
		return nil, err
	}
	out := &imapi.SyncResp{Messages: make([]imapi.Message, len(ms)), HasMore: more}
	for i, m := range ms {
		out.Messages[i] = imapi.Message{
			MsgID: m.MsgID, ConvID: m.ConvID, ConvType: m.ConvType, From: m.Sender, FromDevice: m.SenderDevice,
			To: m.To, Seq: m.Seq, ClientMsgID: m.ClientMsgID, Type: m.Type, Body: m.Body, Mentions: m.Mentions,
			Time: m.Time, Recalled: m.Recalled,
		}
	}
	return out, nil
}
