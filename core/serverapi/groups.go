package serverapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"github.com/nats-io/nats.go"

	"github.com/longlink/longlink/core/imapi"

	"github.com/longlink/longlink/core/internal/buswire"
)

// MaxBatchNotifications bounds the accounts of one batch notification.
const MaxBatchNotifications = 500

// batchWorkers is how many notifications of one batch are stored at once.
const batchWorkers = 8

// GroupCreateReq creates a group owned by Owner.
type GroupCreateReq struct {
	Owner   string   `json:"owner"`
	Name    string   `json:"name"`
	Members []string `json:"members"`
	// InviteMode: "all" (default: any member adds) or "managers".
	InviteMode string `json:"invite_mode,omitempty"`
}

// GroupMembersReq adds or removes members, acting as the member As
// (the owner for removals of others).
type GroupMembersReq struct {
	As      string   `json:"as"`
	Members []string `json:"members"`
}

func (req *GroupMembersReq) check() error {
	if len(req.Members) == 0 {
		return imapi.Errorf(imapi.ErrBadRequest, "members: at least one")
	}
	return nil
}

// GroupActReq names the acting account of a group operation.
type GroupActReq struct {
	As string `json:"as"`
}

// BatchNotificationReq sends one system notification to many accounts.
type BatchNotificationReq struct {
	To          []string        `json:"to"`
	ClientMsgID string          `json:"client_msg_id"`
	Type        string          `json:"type,omitempty"`
	Body        json.RawMessage `json:"body"`
}

// BatchResult is the outcome for one account of a batch: Code 0 with the
// ack fields, or an error code and message.
type BatchResult struct {
	To      string     `json:"to"`
	Code    imapi.Code `json:"code"`
	Message string     `json:"message,omitempty"`
	MsgID   string     `json:"msg_id,omitempty"`
	ConvID  string     `json:"conv_id,omitempty"`
	Seq     int64      `json:"seq,omitempty"`
}

// BatchNotificationResp has one result per requested account, in order.
type BatchNotificationResp struct {
	Results []BatchResult `json:"results"`
}

// groupKind is one kind of group as the HTTP API sees it: the bus ops
// behind its routes and the bodies they answer. The same handlers serve
// /v1/groups and /v1/supergroups.
type groupKind struct {
	create, add, remove, info, dismiss imapi.Op
	// group makes the body create and info answer; changed the body add
	// and remove answer (nil: none).
	group, changed func() any
}

var (
	ordinaryGroups = groupKind{
		create: imapi.OpGroupCreate, add: imapi.OpGroupAdd, remove: imapi.OpGroupRemove, info: imapi.OpGroupInfo, dismiss: imapi.OpGroupDismiss,
		group: func() any { return new(imapi.Group) },
	}
	superGroups = groupKind{
		create: imapi.OpSuperCreate, add: imapi.OpSuperAdd, remove: imapi.OpSuperRemove, info: imapi.OpSuperInfo, dismiss: imapi.OpSuperDismiss,
		group: func() any { return new(imapi.SuperGroup) }, changed: func() any { return new(imapi.SuperMembersResp) },
	}
)

func (s *Server) routeGroups() {
	for prefix, k := range map[string]groupKind{"/v1/groups": ordinaryGroups, "/v1/supergroups": superGroups} {
		s.Handle(http.MethodPost, prefix, s.groupCreate(k))
		s.Handle(http.MethodGet, prefix+"/{group_id}", s.groupInfo(k))
		s.Handle(http.MethodPost, prefix+"/{group_id}/members", s.groupMembers(k.add, k.changed))
		s.Handle(http.MethodPost, prefix+"/{group_id}/members/remove", s.groupMembers(k.remove, k.changed))
		s.Handle(http.MethodPost, prefix+"/{group_id}/dismiss", s.groupDismiss(k))
	}
}

// actor checks that the acting account exists and is enabled and returns
// the session the bus request carries for it.
func (s *Server) actor(ctx context.Context, r *Request, field, account string) (*buswire.Session, error) {
	if !imapi.ValidName(account) {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "%s: want 1-64 of A-Z a-z 0-9 _ -", field)
	}
	u, err := s.deps.Store.User(ctx, r.App.AppKey, account)
	if err != nil {
		return nil, mapStore(err, field)
	}
	if u.Disabled {
		return nil, imapi.Errorf(imapi.ErrUserDisabled, "%s is disabled", field)
	}
	return &buswire.Session{AppKey: r.App.AppKey, Account: account, DeviceType: "server", Gateway: "serverapi"}, nil
}

// busCall sends op over the bus as sess, as a gateway would, within the
// bus timeout, and decodes the reply body into out (when non-nil).
func (s *Server) busCall(ctx context.Context, sess *buswire.Session, op imapi.Op, req, out any) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.BusTimeout.D())
	defer cancel()
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("encode %s: %w", op.Name(), err)
	}
	data, err := json.Marshal(&buswire.Request{Session: *sess, Body: body})
	if err != nil {
		return fmt.Errorf("encode %s: %w", op.Name(), err)
	}
	m, err := s.deps.NATS.RequestWithContext(ctx, s.busRoute(ctx).Subject(op), data)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return imapi.Errorf(imapi.ErrUnavailable, "no service answers %s", op.Name())
		}
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
			return imapi.Errorf(imapi.ErrTimeout, "%s timed out", op.Name())
		}
		return fmt.Errorf("bus %s: %w", op.Name(), err)
	}
	var reply buswire.Reply
	if err := json.Unmarshal(m.Data, &reply); err != nil {
		return fmt.Errorf("bus %s reply: %w", op.Name(), err)
	}
	if reply.Code != imapi.OK {
		return &imapi.Error{Code: reply.Code, Message: reply.Message}
	}
	if out != nil && len(reply.Body) > 0 {
		if err := json.Unmarshal(reply.Body, out); err != nil {
			return fmt.Errorf("bus %s reply body: %w", op.Name(), err)
		}
	}
	return nil
}

// groupCreate creates a group of kind k owned by the request's owner (a
// super-group ignores invite_mode).
func (s *Server) groupCreate(k groupKind) HandlerFunc {
	return func(ctx context.Context, r *Request) (any, error) {
		var req GroupCreateReq
		if err := decodeJSON(r.Body, &req); err != nil {
			return nil, err
		}
		sess, err := s.actor(ctx, r, "owner", req.Owner)
		if err != nil {
			return nil, err
		}
		g := k.group()
		if err := s.busCall(ctx, sess, k.create, &imapi.GroupCreateReq{Name: req.Name, Members: req.Members, InviteMode: req.InviteMode}, g); err != nil {
			return nil, err
		}
		return g, nil
	}
}

// groupRequest reads what every group operation on behalf of an account
// carries, in the order its errors are reported: the group id from the path,
// the JSON body (into body, then its own check when it has one), and the
// acting account that *as names once the body is decoded.
func (s *Server) groupRequest(ctx context.Context, r *Request, body any, as *string) (string, *buswire.Session, error) {
	gid, err := pathGroup(r)
	if err != nil {
		return "", nil, err
	}
	if err := decodeJSON(r.Body, body); err != nil {
		return "", nil, err
	}
	if c, ok := body.(interface{ check() error }); ok {
		if err := c.check(); err != nil {
			return "", nil, err
		}
	}
	sess, err := s.actor(ctx, r, "as", *as)
	if err != nil {
		return "", nil, err
	}
	return gid, sess, nil
}

func pathGroup(r *Request) (string, error) {
	g := r.HTTP.PathValue("group_id")
	if g == "" || len(g) > 64 {
		return "", imapi.Errorf(imapi.ErrBadRequest, "group_id: malformed")
	}
	return g, nil
}

func (s *Server) groupInfo(k groupKind) HandlerFunc {
	return func(ctx context.Context, r *Request) (any, error) {
		gid, err := pathGroup(r)
		if err != nil {
			return nil, err
		}
		sess, err := s.actor(ctx, r, "as", r.HTTP.URL.Query().Get("as"))
		if err != nil {
			return nil, err
		}
		g := k.group()
		if err := s.busCall(ctx, sess, k.info, &imapi.GroupRef{GroupID: gid}, g); err != nil {
			return nil, err
		}
		return g, nil
	}
}

// groupMembers adds or removes members (op); changed makes the body the
// op answers (nil: none).
func (s *Server) groupMembers(op imapi.Op, changed func() any) HandlerFunc {
	return func(ctx context.Context, r *Request) (any, error) {
		var req GroupMembersReq
		gid, sess, err := s.groupRequest(ctx, r, &req, &req.As)
		if err != nil {
			return nil, err
		}
		var resp any
		if changed != nil {
			resp = changed()
		}
		if err := s.busCall(ctx, sess, op, &imapi.GroupMembersReq{GroupID: gid, Members: req.Members}, resp); err != nil {
			return nil, err
		}
		return resp, nil
	}
}

func (s *Server) groupDismiss(k groupKind) HandlerFunc {
	return func(ctx context.Context, r *Request) (any, error) {
		var req GroupActReq
		gid, sess, err := s.groupRequest(ctx, r, &req, &req.As)
		if err != nil {
			return nil, err
		}
		return nil, s.busCall(ctx, sess, k.dismiss, &imapi.GroupRef{GroupID: gid}, nil)
	}
}

func (s *Server) sendBatchNotification(ctx context.Context, r *Request) (any, error) {
	var req BatchNotificationReq
	if err := decodeJSON(r.Body, &req); err != nil {
		return nil, err
	}
	if len(req.To) == 0 {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "to: at least one account")
	}
	if len(req.To) > MaxBatchNotifications {
		s.metrics.oversize.Inc()
		return nil, imapi.Errorf(imapi.ErrTooLarge, "to: at most %d accounts", MaxBatchNotifications)
	}
	if req.Type == "" {
		req.Type = "system"
	}
	sess := &buswire.Session{AppKey: r.App.AppKey, Account: imapi.SystemAccount, DeviceType: "server", Gateway: "serverapi"}
	out := &BatchNotificationResp{Results: make([]BatchResult, len(req.To))}
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range min(batchWorkers, len(req.To)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				res := &out.Results[i]
				res.To = req.To[i]
				ack, err := s.deps.Service.Messages().Send(ctx, sess, &imapi.SendReq{
					ConvType: imapi.ConvP2P, To: req.To[i], ClientMsgID: req.ClientMsgID, Type: req.Type, Body: req.Body,
				})
				if err != nil {
					var ie *imapi.Error
					if !errors.As(err, &ie) {
						s.log.Error("batch notification", "err", err)
						ie = imapi.Errorf(imapi.ErrInternal, "")
					}
					res.Code, res.Message = ie.Code, ie.Message
					continue
				}
				res.MsgID, res.ConvID, res.Seq = ack.MsgID, ack.ConvID, ack.Seq
			}
		}()
	}
	for i := range req.To {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	return out, nil
}
