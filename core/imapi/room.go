package imapi

import "encoding/json"

// Chatrooms (SvcRoom): rooms are created and closed by the app's server
// (server API), which also issues the short-lived per-room entry token and
// tells clients which gateway addresses to use. Members are the sessions
// currently in the room; rooms keep no unread state, only the last N
// messages for those who just entered.
//
// Fan-out: a room message is published once on the room's bus subject
// (core/internal/buswire.RoomSubject). Every gateway that holds members of
// the room subscribes to it (NATS subject interest), so each such gateway
// gets exactly one copy and fans it out locally, batched into one
// OpRoomMessages frame per connection per short interval.
var (
	OpRoomEnter   = Op{SvcRoom, 1}  // RoomEnterReq → RoomEnterResp
	OpRoomLeave   = Op{SvcRoom, 2}  // RoomRef → empty
	OpRoomSend    = Op{SvcRoom, 3}  // RoomSendReq → RoomSendAck
	OpRoomMembers = Op{SvcRoom, 4}  // RoomMembersReq → RoomMembersResp
	OpRoomHistory = Op{SvcRoom, 5}  // RoomHistoryReq → RoomHistoryResp
	OpRoomInfo    = Op{SvcRoom, 6}  // RoomRef → RoomInfo
	OpRoomSetRole = Op{SvcRoom, 7}  // RoomRoleReq → empty (owner only)
	OpRoomMute    = Op{SvcRoom, 8}  // RoomMuteReq → empty (owner, managers)
	OpRoomKick    = Op{SvcRoom, 9}  // RoomKickReq → empty (owner, managers)
	OpRoomClose   = Op{SvcRoom, 10} // RoomRef → empty (owner)

	OpRoomMessages = Op{SvcRoom, 32} // push: RoomBatch (batched room messages)
	OpRoomEvent    = Op{SvcRoom, 33} // push: RoomEvent
)

func init() {
	Register(OpRoomEnter, "room.enter")
	Register(OpRoomLeave, "room.leave")
	Register(OpRoomSend, "room.send")
	Register(OpRoomMembers, "room.members")
	Register(OpRoomHistory, "room.history")
	Register(OpRoomInfo, "room.info")
	Register(OpRoomSetRole, "room.role")
	Register(OpRoomMute, "room.mute")
	Register(OpRoomKick, "room.kick")
	Register(OpRoomClose, "room.close")
	Register(OpRoomMessages, "room.messages")
	Register(OpRoomEvent, "room.event")
}

// Room roles, strongest first.
const (
	RoleOwner   = "owner"
	RoleManager = "manager"
	RoleMember  = "member"
	RoleGuest   = "guest"
)

// Room event kinds.
const (
	RoomEventMuted       = "muted"        // Account muted (Until)
	RoomEventUnmuted     = "unmuted"      // Account may send again
	RoomEventRoomMuted   = "room_muted"   // only owner and managers may send
	RoomEventRoomUnmuted = "room_unmuted" // everyone may send again
	RoomEventRole        = "role"         // Account's role is now Role
	RoomEventKicked      = "kicked"       // Account was removed (and banned until Until)
	RoomEventClosed      = "closed"       // the room is closed; every member is out
)

// RoomEnterReq enters a room with a token from the app's server.
type RoomEnterReq struct {
	RoomID string `json:"room_id"`
	Token  string `json:"token"`
	// History is how many recent messages to return (0: the server's
	// default; capped by the room's history size).
	History int `json:"history,omitempty"`
}

// RoomEnterResp answers a successful enter.
type RoomEnterResp struct {
	Room    RoomInfo      `json:"room"`
	Role    string        `json:"role"`
	History []RoomMessage `json:"history"` // oldest first
}

// RoomRef names a room.
type RoomRef struct {
	RoomID string `json:"room_id"`
}

// RoomInfo describes a room.
type RoomInfo struct {
	RoomID        string `json:"room_id"`
	Name          string `json:"name"`
	Owner         string `json:"owner"`
	Muted         bool   `json:"muted"`
	GuestsCanSend bool   `json:"guests_can_send"`
	Members       int    `json:"members"` // sessions in the room
	LastSeq       int64  `json:"last_seq"`
	Closed        bool   `json:"closed,omitempty"`
	Created       int64  `json:"created"` // unix milliseconds
}

// RoomSendReq sends a message to a room.
type RoomSendReq struct {
	RoomID      string          `json:"room_id"`
	ClientMsgID string          `json:"client_msg_id"`
	Type        string          `json:"type"`
	Body        json.RawMessage `json:"body"`
}

// RoomSendAck is returned once the message is stored in the room's recent
// history and published to the room.
type RoomSendAck struct {
	MsgID string `json:"msg_id"`
	Seq   int64  `json:"seq"`
	Time  int64  `json:"time"`
}

// RoomMessage is a room message as pushed and as kept in recent history.
type RoomMessage struct {
	RoomID      string          `json:"room_id"`
	MsgID       string          `json:"msg_id"`
	Seq         int64           `json:"seq"`
	From        string          `json:"from"`
	ClientMsgID string          `json:"client_msg_id,omitempty"`
	Type        string          `json:"type"`
	Body        json.RawMessage `json:"body"`
	Time        int64           `json:"time"` // unix milliseconds, server clock
}

// RoomBatch is the body of an OpRoomMessages push: the messages of one room
// that reached the gateway within one batching interval, oldest first.
type RoomBatch struct {
	RoomID   string        `json:"room_id"`
	Messages []RoomMessage `json:"messages"`
}

// RoomMembersReq pages through the accounts in a room, in account order,
// starting after After.
type RoomMembersReq struct {
	RoomID string `json:"room_id"`
	After  string `json:"after,omitempty"`
	Limit  int    `json:"limit,omitempty"`
}

// RoomMember is one account in a room.
type RoomMember struct {
	Account    string `json:"account"`
	Role       string `json:"role"`
	MutedUntil int64  `json:"muted_until,omitempty"` // unix milliseconds
}

// RoomMembersResp is one page; Next is the After of the next page ("" at
// the end).
type RoomMembersResp struct {
	Members []RoomMember `json:"members"`
	Next    string       `json:"next,omitempty"`
}

// RoomHistoryReq asks for the room's most recent messages.
type RoomHistoryReq struct {
	RoomID string `json:"room_id"`
	Limit  int    `json:"limit,omitempty"`
}

// RoomHistoryResp carries recent messages, oldest first.
type RoomHistoryResp struct {
	Messages []RoomMessage `json:"messages"`
}

// RoomRoleReq sets a member's role (manager, member or guest).
type RoomRoleReq struct {
	RoomID  string `json:"room_id"`
	Account string `json:"account"`
	Role    string `json:"role"`
}

// RoomMuteReq mutes or unmutes one account, or the whole room when Account
// is empty. DurationSec 0 mutes until unmuted (accounts: the server's cap).
type RoomMuteReq struct {
	RoomID      string `json:"room_id"`
	Account     string `json:"account,omitempty"`
	Muted       bool   `json:"muted"`
	DurationSec int    `json:"duration_sec,omitempty"`
}

// RoomKickReq removes an account's sessions from the room; BanSec keeps
// it from entering again for that long (0: it may enter again with a new
// token).
type RoomKickReq struct {
	RoomID  string `json:"room_id"`
	Account string `json:"account"`
	Reason  string `json:"reason,omitempty"`
	BanSec  int    `json:"ban_sec,omitempty"`
}

// RoomEvent tells a room's members about a change.
type RoomEvent struct {
	RoomID  string `json:"room_id"`
	Kind    string `json:"kind"`
	Account string `json:"account,omitempty"`
	By      string `json:"by,omitempty"`
	Role    string `json:"role,omitempty"`
	Until   int64  `json:"until,omitempty"` // unix milliseconds
	Reason  string `json:"reason,omitempty"`
}
