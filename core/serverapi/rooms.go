package serverapi

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/longlink/longlink/core/imapi"

	"github.com/longlink/longlink/core/internal/buswire"
	"github.com/longlink/longlink/core/service/room"
)

// Chatrooms for the app's server: create and close rooms, issue the
// short-lived entry token a client enters with, tell clients which gateway
// addresses to use (a room's members concentrated on few gateways), send
// system messages into a room and list who is in it.

// RoomTokenReq asks for an entry token for Account ("member" or "guest").
type RoomTokenReq struct {
	Account string `json:"account"`
	Role    string `json:"role,omitempty"`
	TTLSec  int    `json:"ttl_sec,omitempty"`
}

// RoomEntryPointsResp lists the gateways to enter a room through, best
// first.
type RoomEntryPointsResp struct {
	EntryPoints []room.EntryPoint `json:"entry_points"`
}

// RoomMessageReq sends a system message (from imapi.SystemAccount) to
// everyone in a room.
type RoomMessageReq struct {
	ClientMsgID string          `json:"client_msg_id"`
	Type        string          `json:"type,omitempty"`
	Body        json.RawMessage `json:"body"`
}

// RoomKickReq removes Account's sessions from a room; BanSec keeps it out
// for that long (0: it may enter again with a new token).
type RoomKickReq struct {
	Account string `json:"account"`
	Reason  string `json:"reason,omitempty"`
	BanSec  int    `json:"ban_sec,omitempty"`
}

// RoomMuteReq mutes (for DurationSec; 0: until unmuted) or unmutes Account,
// or the whole room when Account is empty (then only the owner and
// managers may send).
type RoomMuteReq struct {
	Account     string `json:"account,omitempty"`
	Muted       bool   `json:"muted"`
	DurationSec int    `json:"duration_sec,omitempty"`
}

func (s *Server) routeRooms() {
	s.Handle(http.MethodPost, "/v1/rooms", s.roomCreate)
	s.Handle(http.MethodGet, "/v1/rooms/{room_id}", s.roomGet)
	s.Handle(http.MethodPost, "/v1/rooms/{room_id}/close", s.roomClose)
	s.Handle(http.MethodPost, "/v1/rooms/{room_id}/tokens", s.roomToken)
	s.Handle(http.MethodGet, "/v1/rooms/{room_id}/addresses", s.roomAddresses)
	s.Handle(http.MethodPost, "/v1/rooms/{room_id}/messages", s.roomMessage)
	s.Handle(http.MethodGet, "/v1/rooms/{room_id}/members", s.roomMembers)
	s.Handle(http.MethodPost, "/v1/rooms/{room_id}/kick", s.roomKick)
	s.Handle(http.MethodPost, "/v1/rooms/{room_id}/mute", s.roomMute)
}

// roomKick and roomMute act as the app's server (SystemAccount): any
// account may be kicked or muted, the owner and managers included, with
// the same events as the client ops.
func (s *Server) roomKick(ctx context.Context, r *Request) (any, error) {
	id, err := pathRoom(r)
	if err != nil {
		return nil, err
	}
	var req RoomKickReq
	if err := decodeJSON(r.Body, &req); err != nil {
		return nil, err
	}
	return nil, s.deps.Service.Rooms().Kick(ctx, r.App.AppKey, &imapi.RoomKickReq{RoomID: id, Account: req.Account, Reason: req.Reason, BanSec: req.BanSec}, imapi.SystemAccount)
}

func (s *Server) roomMute(ctx context.Context, r *Request) (any, error) {
	id, err := pathRoom(r)
	if err != nil {
		return nil, err
	}
	var req RoomMuteReq
	if err := decodeJSON(r.Body, &req); err != nil {
		return nil, err
	}
	return nil, s.deps.Service.Rooms().Mute(ctx, r.App.AppKey, &imapi.RoomMuteReq{RoomID: id, Account: req.Account, Muted: req.Muted, DurationSec: req.DurationSec}, imapi.SystemAccount)
}

func pathRoom(r *Request) (string, error) {
	id := r.HTTP.PathValue("room_id")
	if !imapi.ValidName(id) {
		return "", imapi.Errorf(imapi.ErrBadRequest, "room_id: want 1-64 of A-Z a-z 0-9 _ -")
	}
	return id, nil
}

func (s *Server) roomCreate(ctx context.Context, r *Request) (any, error) {
	var req room.CreateReq
	if err := decodeJSON(r.Body, &req); err != nil {
		return nil, err
	}
	return s.deps.Service.Rooms().Create(ctx, r.App.AppKey, &req)
}

func (s *Server) roomGet(ctx context.Context, r *Request) (any, error) {
	id, err := pathRoom(r)
	if err != nil {
		return nil, err
	}
	return s.deps.Service.Rooms().Info(ctx, r.App.AppKey, id)
}

func (s *Server) roomClose(ctx context.Context, r *Request) (any, error) {
	id, err := pathRoom(r)
	if err != nil {
		return nil, err
	}
	return nil, s.deps.Service.Rooms().Close(ctx, r.App.AppKey, id, imapi.SystemAccount)
}

func (s *Server) roomToken(ctx context.Context, r *Request) (any, error) {
	id, err := pathRoom(r)
	if err != nil {
		return nil, err
	}
	var req RoomTokenReq
	if err := decodeJSON(r.Body, &req); err != nil {
		return nil, err
	}
	if req.TTLSec < 0 {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "ttl_sec: must not be negative")
	}
	if _, err := s.actor(ctx, r, "account", req.Account); err != nil {
		return nil, err
	}
	return s.deps.Service.Rooms().IssueToken(ctx, r.App.AppKey, id, req.Account, req.Role, time.Duration(req.TTLSec)*time.Second)
}

func (s *Server) roomAddresses(ctx context.Context, r *Request) (any, error) {
	id, err := pathRoom(r)
	if err != nil {
		return nil, err
	}
	eps, err := s.deps.Service.Rooms().EntryPoints(ctx, r.App.AppKey, id)
	if err != nil {
		return nil, err
	}
	return &RoomEntryPointsResp{EntryPoints: eps}, nil
}

func (s *Server) roomMessage(ctx context.Context, r *Request) (any, error) {
	id, err := pathRoom(r)
	if err != nil {
		return nil, err
	}
	var req RoomMessageReq
	if err := decodeJSON(r.Body, &req); err != nil {
		return nil, err
	}
	sess := &buswire.Session{AppKey: r.App.AppKey, Account: imapi.SystemAccount, DeviceType: "server", Gateway: "serverapi"}
	return s.deps.Service.Rooms().Send(ctx, sess, &imapi.RoomSendReq{RoomID: id, ClientMsgID: req.ClientMsgID, Type: req.Type, Body: req.Body})
}

func (s *Server) roomMembers(ctx context.Context, r *Request) (any, error) {
	id, err := pathRoom(r)
	if err != nil {
		return nil, err
	}
	q := r.HTTP.URL.Query()
	req := imapi.RoomMembersReq{RoomID: id, After: q.Get("after")}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > maxHistoryPage {
			return nil, imapi.Errorf(imapi.ErrBadRequest, "limit: 1..%d", maxHistoryPage)
		}
		req.Limit = n
	}
	return s.deps.Service.Rooms().Members(ctx, r.App.AppKey, &req)
}
