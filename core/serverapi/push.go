package serverapi

import (
	"context"
	"net/http"
	"strconv"
	"strings"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/store"
)

// Push tokens, push settings and the session event log.

const maxEventPage = 500

func (s *Server) routePush() {
	s.Handle(http.MethodPut, "/v1/users/{account}/push-tokens/{device_id}", s.putPushToken)
	s.Handle(http.MethodDelete, "/v1/users/{account}/push-tokens/{device_id}", s.deletePushToken)
	s.Handle(http.MethodGet, "/v1/users/{account}/push-settings", s.getPushSettings)
	s.Handle(http.MethodPut, "/v1/users/{account}/push-settings", s.putPushSettings)
	s.Handle(http.MethodGet, "/v1/events", s.events)
}

func pathDevice(r *Request) (string, error) {
	d := r.HTTP.PathValue("device_id")
	if d == "" || len(d) > 128 {
		return "", imapi.Errorf(imapi.ErrBadRequest, "device_id: 1-128 bytes")
	}
	return d, nil
}

// existingUser checks the account exists, so that tokens and settings are
// never stored for nobody.
func (s *Server) existingUser(ctx context.Context, r *Request) (string, error) {
	acct, err := pathAccount(r)
	if err != nil {
		return "", err
	}
	if _, err := s.deps.Store.User(ctx, r.App.AppKey, acct); err != nil {
		return "", mapStore(err, "user")
	}
	return acct, nil
}

func (s *Server) putPushToken(ctx context.Context, r *Request) (any, error) {
	acct, err := s.existingUser(ctx, r)
	if err != nil {
		return nil, err
	}
	dev, err := pathDevice(r)
	if err != nil {
		return nil, err
	}
	var req imapi.PushTokenReq
	if err := decodeJSON(r.Body, &req); err != nil {
		return nil, err
	}
	if err := s.deps.Service.Push().Register(ctx, r.App.AppKey, acct, dev, &req); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

func (s *Server) deletePushToken(ctx context.Context, r *Request) (any, error) {
	acct, err := pathAccount(r)
	if err != nil {
		return nil, err
	}
	dev, err := pathDevice(r)
	if err != nil {
		return nil, err
	}
	if err := s.deps.Store.DeletePushToken(ctx, r.App.AppKey, acct, dev); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

func (s *Server) getPushSettings(ctx context.Context, r *Request) (any, error) {
	acct, err := s.existingUser(ctx, r)
	if err != nil {
		return nil, err
	}
	return s.deps.Service.Push().Settings(ctx, r.App.AppKey, acct)
}

func (s *Server) putPushSettings(ctx context.Context, r *Request) (any, error) {
	acct, err := s.existingUser(ctx, r)
	if err != nil {
		return nil, err
	}
	var req imapi.PushSettings
	if err := decodeJSON(r.Body, &req); err != nil {
		return nil, err
	}
	return s.deps.Service.Push().SetSettings(ctx, r.App.AppKey, acct, &req)
}

// Event is one entry of the session event log.
type Event struct {
	ID         string `json:"id"`
	Kind       string `json:"kind"` // login, logout, kick
	Account    string `json:"account"`
	Time       int64  `json:"time"` // unix milliseconds
	DeviceID   string `json:"device_id,omitempty"`
	DeviceType string `json:"device_type,omitempty"`
	ClientIP   string `json:"client_ip,omitempty"`
	SDK        string `json:"sdk,omitempty"`
	SessionID  string `json:"session_id,omitempty"`
	Gateway    string `json:"gateway,omitempty"`
	Reason     string `json:"reason,omitempty"`
}

// EventsResp is a page of the event log, oldest first; Next, when set, is
// the cursor of the following page.
type EventsResp struct {
	Events []Event `json:"events"`
	Next   string  `json:"next,omitempty"`
}

func queryInt(q map[string][]string, name string, def int64) (int64, error) {
	v := ""
	if vs := q[name]; len(vs) > 0 {
		v = vs[0]
	}
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, imapi.Errorf(imapi.ErrBadRequest, "%s: want a non-negative integer", name)
	}
	return n, nil
}

// events pages through the app's event log: ?account=&from=&to= (unix
// milliseconds, from inclusive, to exclusive) &limit= &cursor=.
func (s *Server) events(ctx context.Context, r *Request) (any, error) {
	q := r.HTTP.URL.Query()
	eq := store.EventQuery{AppKey: r.App.AppKey, Account: q.Get("account")}
	if eq.Account != "" && len(eq.Account) > 128 {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "account: too long")
	}
	var err error
	if eq.From, err = queryInt(q, "from", 0); err != nil {
		return nil, err
	}
	if eq.To, err = queryInt(q, "to", 0); err != nil {
		return nil, err
	}
	limit, err := queryInt(q, "limit", 100)
	if err != nil {
		return nil, err
	}
	if limit < 1 || limit > maxEventPage {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "limit: want 1..%d", maxEventPage)
	}
	eq.Limit = int(limit)
	if c := q.Get("cursor"); c != "" {
		ts, id, ok := strings.Cut(c, ".")
		t, perr := strconv.ParseInt(ts, 10, 64)
		if !ok || perr != nil || id == "" || len(id) > 64 {
			return nil, imapi.Errorf(imapi.ErrBadRequest, "cursor: malformed")
		}
		eq.AfterTime, eq.AfterID = t, id
	}
	evs, more, err := s.deps.Store.Events(ctx, eq)
	if err != nil {
		return nil, err
	}
	out := &EventsResp{Events: make([]Event, len(evs))}
	for i, e := range evs {
		out.Events[i] = Event{ID: e.ID, Kind: e.Kind, Account: e.Account, Time: e.Time, DeviceID: e.DeviceID,
			DeviceType: e.DeviceType, ClientIP: e.ClientIP, SDK: e.SDK, SessionID: e.SessionID, Gateway: e.Gateway, Reason: e.Reason}
	}
	if more && len(evs) > 0 {
		last := evs[len(evs)-1]
		out.Next = strconv.FormatInt(last.Time, 10) + "." + last.ID
	}
	return out, nil
}
