// Package room is the chatroom domain of the app services: rooms created
// by the app's server, entered with per-room tokens, messages kept in a
// short recent history and published once per room, roles, mutes, kicks,
// and the gateways announcing themselves as entry points. It answers the
// room.* ops.
package room

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/ratelimit"
	"github.com/longlink/longlink/core/service/internal/dispatch"
	"github.com/longlink/longlink/core/service/internal/node"
	"github.com/longlink/longlink/core/store"
)

// Rooms serves the room.* ops and the server API's room calls.
type Rooms struct {
	n               *node.Node
	cfg             Config
	maxMessageBytes int
	metrics         *metrics
	limits          *ratelimit.Limiter
	roomState
}

// New builds the room domain; maxMessageBytes caps a message body; limits
// enforces the rooms' message rates (cluster-wide when it is the core's).
func New(n *node.Node, cfg Config, maxMessageBytes int, limits *ratelimit.Limiter, reg prometheus.Registerer) (*Rooms, error) {
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &Rooms{n: n, cfg: cfg, maxMessageBytes: maxMessageBytes, limits: limits, metrics: m}, nil
}

// Routes are the room ops.
func (s *Rooms) Routes() []dispatch.Route {
	return []dispatch.Route{
		{Op: imapi.OpRoomEnter, Handle: s.roomEnter},
		{Op: imapi.OpRoomLeave, Handle: s.roomLeave},
		{Op: imapi.OpRoomSend, Handle: s.roomSend},
		{Op: imapi.OpRoomMembers, Handle: s.roomMembers},
		{Op: imapi.OpRoomHistory, Handle: s.roomHistory},
		{Op: imapi.OpRoomInfo, Handle: s.roomInfo},
		{Op: imapi.OpRoomSetRole, Handle: s.roomSetRole},
		{Op: imapi.OpRoomMute, Handle: s.roomMute},
		{Op: imapi.OpRoomKick, Handle: s.roomKick},
		{Op: imapi.OpRoomClose, Handle: s.roomClose},
	}
}

// CreateReq is what the app's server gives to create a room.
type CreateReq struct {
	RoomID        string  `json:"room_id"`
	Name          string  `json:"name"`
	Owner         string  `json:"owner"`
	GuestsCanSend bool    `json:"guests_can_send"`
	HistorySize   int     `json:"history_size,omitempty"`
	MsgRate       float64 `json:"msg_rate,omitempty"`
	MemberRate    float64 `json:"member_rate,omitempty"`
}

// Token is an entry token for one account and one room.
type Token struct {
	Token   string `json:"token"`
	Role    string `json:"role"`
	Expires int64  `json:"expires"` // unix seconds
}

// EntryPoint is one gateway a client should enter a room through.
type EntryPoint struct {
	Gateway   string   `json:"gateway"`
	Addresses []string `json:"addresses"`
	Members   int      `json:"members"` // the room's sessions on it now
}

// --- server-side room management ---

// Create creates a room owned by an existing account.
func (s *Rooms) Create(ctx context.Context, appkey string, req *CreateReq) (*imapi.RoomInfo, error) {
	if !imapi.ValidName(req.RoomID) || !imapi.ValidName(req.Owner) {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "room_id and owner: want 1-64 of A-Z a-z 0-9 _ -")
	}
	if len(req.Name) > 128 {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "name: at most 128 bytes")
	}
	if req.HistorySize == 0 {
		req.HistorySize = s.cfg.HistorySize
	}
	if req.HistorySize < 1 || req.HistorySize > s.cfg.MaxHistorySize {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "history_size: 1..%d", s.cfg.MaxHistorySize)
	}
	if req.MsgRate < 0 || req.MemberRate < 0 || req.MsgRate > 1e6 || req.MemberRate > 1e6 {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "msg_rate and member_rate: 0 (default) to 1e6")
	}
	ok, err := s.n.Store.UsersExist(ctx, appkey, []string{req.Owner})
	if err != nil {
		return nil, node.StoreErr(err, "owner")
	}
	if !ok[req.Owner] {
		return nil, imapi.Errorf(imapi.ErrNotFound, "owner %s not found", req.Owner)
	}
	r := store.Room{AppKey: appkey, RoomID: req.RoomID, Name: req.Name, Owner: req.Owner, GuestsCanSend: req.GuestsCanSend,
		HistorySize: req.HistorySize, MsgRate: req.MsgRate, MemberRate: req.MemberRate, Created: s.n.Now()}
	if err := s.n.Store.CreateRoom(ctx, r); err != nil {
		return nil, node.StoreErr(err, "room")
	}
	s.metrics.rooms.WithLabelValues("created").Inc()
	return roomInfo(&r, 0), nil
}

func roomInfo(r *store.Room, members int) *imapi.RoomInfo {
	return &imapi.RoomInfo{RoomID: r.RoomID, Name: r.Name, Owner: r.Owner, Muted: r.Muted, GuestsCanSend: r.GuestsCanSend,
		Members: members, LastSeq: r.LastSeq, Closed: r.Closed, Created: r.Created.UnixMilli()}
}

// roomSizeTTL is how long an enter may report a room size counted
// earlier: counting costs a scan of the room's presence, and a crowd
// entering at once would scan it once each.
const roomSizeTTL = 2 * time.Second

// roomSize is the room's session count, counted at most every roomSizeTTL.
func (s *Rooms) roomSize(ctx context.Context, appkey, roomID string) (int, error) {
	key := appkey + "/" + roomID
	now := s.n.Now()
	s.mu.Lock()
	c, ok := s.sizes[key]
	s.mu.Unlock()
	if ok && now.Sub(c.at) < roomSizeTTL {
		return c.n, nil
	}
	gws, err := s.n.Store.RoomGateways(ctx, appkey, roomID)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, c := range gws {
		n += c
	}
	s.mu.Lock()
	if len(s.sizes) >= maxSizes {
		clear(s.sizes)
	}
	s.sizes[key] = roomCount{n: n, at: now}
	s.mu.Unlock()
	return n, nil
}

// Info describes a room (closed ones included) with its member count.
func (s *Rooms) Info(ctx context.Context, appkey, roomID string) (*imapi.RoomInfo, error) {
	r, err := s.n.Store.Room(ctx, appkey, roomID)
	if err != nil {
		return nil, node.StoreErr(err, "room")
	}
	gws, err := s.n.Store.RoomGateways(ctx, appkey, roomID)
	if err != nil {
		return nil, node.StoreErr(err, "room")
	}
	n := 0
	for _, c := range gws {
		n += c
	}
	return roomInfo(&r, n), nil
}

// Close closes a room: its members are told and removed, sends and
// entries fail from now on.
func (s *Rooms) Close(ctx context.Context, appkey, roomID, by string) error {
	if err := s.n.Store.CloseRoom(ctx, appkey, roomID); err != nil {
		return node.StoreErr(err, "room")
	}
	s.metrics.rooms.WithLabelValues("closed").Inc()
	s.roomEvent(appkey, &imapi.RoomEvent{RoomID: roomID, Kind: imapi.RoomEventClosed, By: by})
	return nil
}

// Members pages through the accounts in a room.
func (s *Rooms) Members(ctx context.Context, appkey string, req *imapi.RoomMembersReq) (*imapi.RoomMembersResp, error) {
	if req.After != "" && !imapi.ValidName(req.After) {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "after: not an account")
	}
	rows, more, err := s.n.Store.RoomMembers(ctx, appkey, req.RoomID, req.After, s.n.Page(req.Limit))
	if err != nil {
		return nil, node.StoreErr(err, "room")
	}
	out := &imapi.RoomMembersResp{Members: make([]imapi.RoomMember, len(rows))}
	now := s.n.Now().UnixMilli()
	for i, r := range rows {
		role := r.Role
		if role == "" {
			role = imapi.RoleMember
		}
		m := imapi.RoomMember{Account: r.Account, Role: role}
		if r.MutedUntil > now {
			m.MutedUntil = r.MutedUntil
		}
		out.Members[i] = m
	}
	if more && len(rows) > 0 {
		out.Next = rows[len(rows)-1].Account
	}
	return out, nil
}
