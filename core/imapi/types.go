package imapi

import "encoding/json"

// Conversation types.
const (
	ConvP2P   = 1
	ConvGroup = 2
	ConvRoom  = 3
)

// Multi-device policies of an app.
const (
	// DevicesKickSameType keeps one session per device type (phone, pc, web…):
	// a new login kicks the older session of the same type.
	DevicesKickSameType = "kick_same_type"
	// DevicesAllowAll keeps every session.
	DevicesAllowAll = "allow_all"
	// DevicesSingle keeps one session per account across all types.
	DevicesSingle = "single"
)

// LoginReq is the first request of every session (the Link auth frame).
type LoginReq struct {
	AppKey     string `json:"appkey"`
	Account    string `json:"account"`
	Token      string `json:"token"`
	DeviceID   string `json:"device_id"`
	DeviceType string `json:"device_type"` // phone, pad, pc, web …
	SDKVersion string `json:"sdk_version"`
	Platform   string `json:"platform,omitempty"`
	// SessionID is set by an edge that answered the login itself with this
	// session id (LINK.md section 7): 32 lowercase hex characters. Gateways
	// honour it only on their pre-terminated listener and drop it elsewhere.
	SessionID string `json:"session_id,omitempty"`
}

// LoginResp answers a successful login.
type LoginResp struct {
	SessionID    string `json:"session_id"`
	ServerTime   int64  `json:"server_time"`   // unix milliseconds
	HeartbeatSec int    `json:"heartbeat_sec"` // the client sends a heartbeat at this interval
}

// Kick tells a session that it is being closed and why.
type Kick struct {
	Code   Code   `json:"code"`
	Reason string `json:"reason,omitempty"`
	By     string `json:"by_device,omitempty"`
}

// SendReq sends a message. ClientMsgID is chosen by the client and makes the
// send idempotent: resending the same id returns the original ack.
type SendReq struct {
	ConvType    int             `json:"conv_type"`
	To          string          `json:"to"` // account, group id or room id
	ClientMsgID string          `json:"client_msg_id"`
	Type        string          `json:"type"` // text, custom, image …
	Body        json.RawMessage `json:"body"`
	Mentions    []string        `json:"mentions,omitempty"`
}

// SendAck is returned only after the message is durable.
type SendAck struct {
	MsgID  string `json:"msg_id"`
	ConvID string `json:"conv_id"`
	Seq    int64  `json:"seq"`
	Time   int64  `json:"time"` // unix milliseconds, server clock
}

// Message is a stored message, as pushed and synced.
type Message struct {
	MsgID       string          `json:"msg_id"`
	ConvID      string          `json:"conv_id"`
	ConvType    int             `json:"conv_type"`
	From        string          `json:"from"`
	FromDevice  string          `json:"from_device,omitempty"`
	To          string          `json:"to"`
	Seq         int64           `json:"seq"`
	ClientMsgID string          `json:"client_msg_id"`
	Type        string          `json:"type"`
	Body        json.RawMessage `json:"body"`
	Mentions    []string        `json:"mentions,omitempty"`
	Time        int64           `json:"time"`
	Recalled    bool            `json:"recalled,omitempty"`
}

// SyncReq asks for messages of a conversation with seq > AfterSeq, oldest first.
type SyncReq struct {
	ConvID   string `json:"conv_id"`
	AfterSeq int64  `json:"after_seq"`
	Limit    int    `json:"limit,omitempty"`
}

// HistoryReq asks for messages with seq < BeforeSeq (0: from the newest),
// newest first.
type HistoryReq struct {
	ConvID    string `json:"conv_id"`
	BeforeSeq int64  `json:"before_seq,omitempty"`
	Limit     int    `json:"limit,omitempty"`
}

// SyncResp carries a page of messages.
type SyncResp struct {
	Messages []Message `json:"messages"`
	HasMore  bool      `json:"has_more"`
}

// ReadReq marks a conversation read up to Seq.
type ReadReq struct {
	ConvID string `json:"conv_id"`
	Seq    int64  `json:"seq"`
}

// Receipt tells the other side of a 1:1 conversation how far Reader has read.
type Receipt struct {
	ConvID string `json:"conv_id"`
	Reader string `json:"reader"`
	Seq    int64  `json:"seq"`
}

// RecallReq withdraws a message the caller sent.
type RecallReq struct {
	ConvID string `json:"conv_id"`
	MsgID  string `json:"msg_id"`
}

// Recalled tells members that a message was withdrawn.
type Recalled struct {
	ConvID string `json:"conv_id"`
	MsgID  string `json:"msg_id"`
	Seq    int64  `json:"seq"`
	By     string `json:"by"`
}

// Conversation is one row of the conversation list.
type Conversation struct {
	ConvID   string   `json:"conv_id"`
	ConvType int      `json:"conv_type"`
	Peer     string   `json:"peer"` // the other account, or the group id
	LastSeq  int64    `json:"last_seq"`
	ReadSeq  int64    `json:"read_seq"`
	Unread   int64    `json:"unread"`
	Mentions int64    `json:"mentions,omitempty"` // unread messages that @mention the caller
	Last     *Message `json:"last,omitempty"`
	Muted    bool     `json:"muted,omitempty"` // the caller muted it (no offline push)
}

// ConvListResp is the conversation list, most recent first.
type ConvListResp struct {
	Conversations []Conversation `json:"conversations"`
}

// GroupCreateReq creates a group owned by the caller.
type GroupCreateReq struct {
	Name    string   `json:"name"`
	Members []string `json:"members"`
	// InviteMode: who may add members, GroupInviteAll ("" too) or
	// GroupInviteManagers (grouprole.go).
	InviteMode string `json:"invite_mode,omitempty"`
}

// GroupMembersReq adds or removes members.
type GroupMembersReq struct {
	GroupID string   `json:"group_id"`
	Members []string `json:"members"`
}

// GroupRef names a group.
type GroupRef struct {
	GroupID string `json:"group_id"`
}

// Group describes a group.
type Group struct {
	GroupID string   `json:"group_id"`
	Name    string   `json:"name"`
	Owner   string   `json:"owner"`
	Members []string `json:"members"`
	Created int64    `json:"created"`
	// Roles and profile (group.info and group.update answers; see
	// grouprole.go).
	Managers      []string `json:"managers,omitempty"`
	Announcement  string   `json:"announcement,omitempty"`
	Avatar        string   `json:"avatar,omitempty"`
	AnyoneUpdates bool     `json:"anyone_updates,omitempty"`
	InviteMode    string   `json:"invite_mode,omitempty"`
}

// GroupListResp lists the caller's groups.
type GroupListResp struct {
	Groups []Group `json:"groups"`
}

// GroupEvent tells members about membership changes.
type GroupEvent struct {
	GroupID string   `json:"group_id"`
	Kind    string   `json:"kind"` // created, added, removed, left, dismissed, updated, role, transferred
	By      string   `json:"by"`
	Members []string `json:"members,omitempty"`
	// Role is the new role of Members ("role" events).
	Role string `json:"role,omitempty"`
	// Group is the group after an "updated" event (without its members).
	Group *Group `json:"group,omitempty"`
}
