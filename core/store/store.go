// Package store is the IM core's durable state behind one interface: apps,
// users, hashed tokens, conversations with a monotonic per-conversation
// sequence, messages, per-user conversation state (read position, unread and
// mention counts) and groups.
//
// Two backends share one logical schema and its versioned migrations: SQLite
// (pure Go, embedded default, a single writer connection in WAL mode) and
// PostgreSQL (clusters; several service nodes may write at once). Message
// appends are group-committed: concurrent AppendMessage calls are batched into
// one transaction and each caller is answered after the commit.
package store

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors callers branch on.
var (
	ErrNotFound  = errors.New("store: not found")
	ErrExists    = errors.New("store: already exists")
	ErrForbidden = errors.New("store: not a member")
	ErrClosed    = errors.New("store: closed")
	// ErrUnavailable fails a group commit that the database did not finish
	// in time (a lock or statement timeout, the commit timeout, a lost
	// connection): the appends may or may not be stored. Retrying them is
	// safe (appends are idempotent by client_msg_id).
	ErrUnavailable = errors.New("store: database unavailable")
)

// App is a tenant: its appkey, the secret its servers sign API calls with,
// its multi-device policy and the heartbeat interval announced at login.
type App struct {
	AppKey       string
	Secret       string
	Devices      string // imapi.DevicesKickSameType, DevicesAllowAll or DevicesSingle
	HeartbeatSec int
}

// User is an account of an app.
type User struct {
	AppKey   string
	Account  string
	Name     string
	Disabled bool
	Created  time.Time
}

// UserUpdate changes some fields of a user; nil fields are kept.
type UserUpdate struct {
	Name     *string
	Disabled *bool
}

// Message is a stored message.
type Message struct {
	AppKey       string
	ConvID       string
	ConvType     int
	Seq          int64
	MsgID        string
	Sender       string
	SenderDevice string
	To           string // the recipient account or the group id
	ClientMsgID  string
	Type         string
	Body         []byte // JSON; empty once recalled
	Mentions     []string
	Time         int64 // unix milliseconds
	Recalled     bool
}

// Append is one message to store. ConvID, ConvType, Sender, ClientMsgID,
// MsgID (a fresh candidate) and Time are required.
type Append struct {
	Message
	// Peer, for a 1:1 message, is the recipient; it must be an existing,
	// enabled user (checked inside the commit, so a send costs one round trip).
	Peer string
	// GroupID, for a group message, names the group; the sender must be a
	// member (ErrForbidden otherwise) and every member's state is updated.
	GroupID string
	// BlockMode is the app's blacklist mode for a 1:1 message (BlockInbound
	// or BlockBoth); a blocked append fails with ErrBlocked, checked inside
	// the commit.
	BlockMode int
	// Super marks GroupID as a super-group: the sender must be a member,
	// and only the sender's read position is written (read diffusion).
	Super bool
}

// AppendResult is the outcome of one Append.
type AppendResult struct {
	MsgID string
	Seq   int64
	Time  int64
	// Duplicate is true when (conv, sender, client_msg_id) was already
	// stored: the fields above are those of the original message.
	Duplicate bool
	// Members are the accounts of the conversation at the time of the append
	// (both sides of a 1:1, or the group's members), for fan-out; none
	// for a super-group.
	Members []string
	// Err, from AppendMessages, refuses this append alone (ErrForbidden:
	// not a member; ErrNotFound: no such peer; ErrBlocked): nothing of it
	// was stored, the unit's other appends were.
	Err error
}

// ConvState is one row of a user's conversation list.
type ConvState struct {
	ConvID   string
	ConvType int
	Peer     string
	LastSeq  int64
	LastTime int64
	ReadSeq  int64
	Unread   int64
	Mentions int64
	Last     *Message
}

// Group is a group and its members.
type Group struct {
	AppKey  string
	GroupID string
	Name    string
	Owner   string
	Members []string
	Created time.Time
	// InviteMode is written by CreateGroup ("" is "all"); GroupMeta reads it.
	InviteMode string
}

// Store is what the app services and the server API need.
type Store interface {
	RoomStore
	RelationStore
	GroupRoleStore

	// PutApp creates or updates an app (seeded from config at start).
	PutApp(ctx context.Context, app App) error
	// App returns ErrNotFound for an unknown appkey.
	App(ctx context.Context, appkey string) (App, error)

	// CreateUser returns ErrExists when the account exists.
	CreateUser(ctx context.Context, u User) error
	UpdateUser(ctx context.Context, appkey, account string, upd UserUpdate) (User, error)
	User(ctx context.Context, appkey, account string) (User, error)
	// UsersExist returns the subset of accounts that exist and are enabled.
	UsersExist(ctx context.Context, appkey string, accounts []string) (map[string]bool, error)

	// PutToken records the SHA-256 hash of a token; the raw token is never
	// stored. revokeOthers deletes the account's other tokens.
	PutToken(ctx context.Context, appkey, account string, hash []byte, expires time.Time, revokeOthers bool) error
	// CheckToken reports whether hash is a live token of the account.
	CheckToken(ctx context.Context, appkey, account string, hash []byte, now time.Time) (bool, error)

	// AppendMessages stores messages durably (group-committed) as one
	// unit: in one transaction, each conversation's appends getting
	// sequences in the order of as. A result carries the sequence, or the
	// original's on a duplicate client_msg_id, or the append's own refusal
	// (AppendResult.Err). The error fails the whole unit (nothing stored).
	AppendMessages(ctx context.Context, as []*Append) ([]AppendResult, error)
	// AppendMessage is AppendMessages of one; the append's refusal is the
	// error.
	AppendMessage(ctx context.Context, a *Append) (AppendResult, error)
	// Messages returns up to limit messages with seq > afterSeq, oldest
	// first, and whether more exist.
	Messages(ctx context.Context, appkey, convID string, afterSeq int64, limit int) ([]Message, bool, error)
	// History returns up to limit messages with seq < beforeSeq (0: from the
	// newest), newest first, and whether older ones exist.
	History(ctx context.Context, appkey, convID string, beforeSeq int64, limit int) ([]Message, bool, error)
	// MessageByID returns ErrNotFound when the message is not in convID.
	MessageByID(ctx context.Context, appkey, convID, msgID string) (Message, error)
	// Recall marks a message recalled and drops its body.
	Recall(ctx context.Context, appkey, convID, msgID string) error

	// MarkRead moves the account's read position in convID up to seq (never
	// back) and recomputes its unread and mention counts. It returns the new
	// read position; ErrNotFound when the account has no such conversation.
	MarkRead(ctx context.Context, appkey, account, convID string, seq int64) (int64, error)
	// Conversations lists the account's conversations, most recent first,
	// each with its last message.
	Conversations(ctx context.Context, appkey, account string, limit int) ([]ConvState, error)

	// CreateGroup stores a group with its members (the owner included).
	CreateGroup(ctx context.Context, g Group) error
	// Group returns ErrNotFound for an unknown or dismissed group.
	Group(ctx context.Context, appkey, groupID string) (Group, error)
	// AddMembers returns the accounts actually added.
	AddMembers(ctx context.Context, appkey, groupID string, accounts []string) ([]string, error)
	// RemoveMembers returns the accounts actually removed.
	RemoveMembers(ctx context.Context, appkey, groupID string, accounts []string) ([]string, error)
	// GroupsOf lists the groups the account is a member of.
	GroupsOf(ctx context.Context, appkey, account string) ([]Group, error)
	// DismissGroup deletes the group's membership and marks it dismissed.
	DismissGroup(ctx context.Context, appkey, groupID string) error

	SuperStore
	PushStore

	// Close flushes pending appends and closes the database.
	Close() error
}
