package imapi

import "encoding/json"

// Profiles and relationships (SvcUser, commands 1–39).
//
// Every change to a relationship is recorded as a Notice in the notice
// stream of each account concerned, with that account's next notice
// sequence, and pushed (OpNotice) to all of its sessions, the acting one
// included. A device that was offline asks OpNoticeSync for the notices
// after the last sequence it saw, so no device misses a change.
var (
	OpProfileGet     = Op{SvcUser, 1}  // ProfilesReq → ProfilesResp
	OpProfileUpdate  = Op{SvcUser, 2}  // ProfileUpdateReq → Profile
	OpFriendRequest  = Op{SvcUser, 3}  // FriendRequestReq → FriendRequestResp
	OpFriendAccept   = Op{SvcUser, 4}  // FriendAnswerReq → empty
	OpFriendReject   = Op{SvcUser, 5}  // FriendAnswerReq → empty
	OpFriendDelete   = Op{SvcUser, 6}  // AccountRef → empty
	OpFriendAlias    = Op{SvcUser, 7}  // FriendAliasReq → empty
	OpFriendList     = Op{SvcUser, 8}  // empty → FriendListResp
	OpFriendRequests = Op{SvcUser, 9}  // empty → FriendRequestsResp
	OpBlockAdd       = Op{SvcUser, 10} // AccountRef → empty
	OpBlockRemove    = Op{SvcUser, 11} // AccountRef → empty
	OpBlockList      = Op{SvcUser, 12} // empty → AccountsResp
	OpMuteAdd        = Op{SvcUser, 13} // MuteReq → empty
	OpMuteRemove     = Op{SvcUser, 14} // MuteReq → empty
	OpMuteList       = Op{SvcUser, 15} // empty → MuteListResp
	OpNoticeSync     = Op{SvcUser, 16} // NoticeSyncReq → NoticeSyncResp
	OpNotice         = Op{SvcUser, 17} // push: Notice
	OpProfileChanged = Op{SvcUser, 18} // push: Profile (a friend's profile changed; not in the stream)
)

func init() {
	for op, name := range map[Op]string{
		OpProfileGet: "user.profiles", OpProfileUpdate: "user.update",
		OpFriendRequest: "friend.request", OpFriendAccept: "friend.accept", OpFriendReject: "friend.reject",
		OpFriendDelete: "friend.delete", OpFriendAlias: "friend.alias", OpFriendList: "friend.list",
		OpFriendRequests: "friend.requests",
		OpBlockAdd:       "blacklist.add", OpBlockRemove: "blacklist.remove", OpBlockList: "blacklist.list",
		OpMuteAdd: "mute.add", OpMuteRemove: "mute.remove", OpMuteList: "mute.list",
		OpNoticeSync: "notice.sync", OpNotice: "notice", OpProfileChanged: "user.profile_changed",
	} {
		Register(op, name)
	}
	codeText[ErrBlocked] = "blocked by the recipient"
	codeText[ErrNotFriends] = "not friends"
}

// Result codes of relationships.
const (
	// ErrBlocked: the recipient's blacklist refuses the message (or, when
	// the app blocks both ways, the sender blocked the recipient).
	ErrBlocked Code = 1101
	// ErrNotFriends: the operation needs a friendship that does not exist.
	ErrNotFriends Code = 1102
)

// Limits of profiles, checked by the services (ErrBadRequest or
// ErrTooLarge with the field named).
const (
	MaxProfileName    = 64   // bytes
	MaxAvatarURL      = 1024 // bytes
	MaxProfileExt     = 4096 // bytes of the ext JSON object
	MaxProfileExtKeys = 32   // top-level keys of ext
	MaxFriendMessage  = 256  // bytes
	MaxAlias          = 64   // bytes
	MaxProfilesAsked  = 100  // accounts in one ProfilesReq
)

// Profile is the public part of a user, readable by every user of the app.
type Profile struct {
	Account string          `json:"account"`
	Name    string          `json:"name"`
	Avatar  string          `json:"avatar,omitempty"`
	Ext     json.RawMessage `json:"ext,omitempty"` // the app's custom fields: a JSON object
	Updated int64           `json:"updated,omitempty"`
}

// ProfilesReq asks for profiles (batch get).
type ProfilesReq struct {
	Accounts []string `json:"accounts"`
}

// ProfilesResp carries the profiles of the accounts that exist.
type ProfilesResp struct {
	Profiles []Profile `json:"profiles"`
}

// ProfileUpdateReq changes the caller's profile; absent fields are kept.
// Ext replaces the custom fields as a whole ({} clears them).
type ProfileUpdateReq struct {
	Name   *string         `json:"name,omitempty"`
	Avatar *string         `json:"avatar,omitempty"`
	Ext    json.RawMessage `json:"ext,omitempty"`
}

// AccountRef names another account.
type AccountRef struct {
	Account string `json:"account"`
}

// FriendRequestReq asks Account to become a friend.
type FriendRequestReq struct {
	Account string `json:"account"`
	Message string `json:"message,omitempty"`
}

// FriendRequestResp: Accepted is true when Account had already asked the
// caller, so the two are friends now.
type FriendRequestResp struct {
	Accepted bool `json:"accepted"`
}

// FriendAnswerReq accepts or rejects the request of Account. Alias (accept
// only) is the caller's remark for the new friend.
type FriendAnswerReq struct {
	Account string `json:"account"`
	Alias   string `json:"alias,omitempty"`
	Message string `json:"message,omitempty"` // reject only: told to the requester
}

// FriendAliasReq sets the caller's remark on a friend ("" clears it).
type FriendAliasReq struct {
	Account string `json:"account"`
	Alias   string `json:"alias"`
}

// Friend is one row of the friend list.
type Friend struct {
	Account string `json:"account"`
	Alias   string `json:"alias,omitempty"`
	Since   int64  `json:"since"`
}

// FriendListResp is the caller's friend list.
type FriendListResp struct {
	Friends []Friend `json:"friends"`
}

// FriendRequest is a pending request.
type FriendRequest struct {
	From    string `json:"from"`
	To      string `json:"to"`
	Message string `json:"message,omitempty"`
	Time    int64  `json:"time"`
}

// FriendRequestsResp lists the pending requests to and from the caller.
type FriendRequestsResp struct {
	Requests []FriendRequest `json:"requests"`
}

// AccountsResp is a list of accounts (the blacklist).
type AccountsResp struct {
	Accounts []string `json:"accounts"`
}

// MuteReq mutes or unmutes a conversation: ConvID, or Account for the 1:1
// conversation with that account.
type MuteReq struct {
	ConvID  string `json:"conv_id,omitempty"`
	Account string `json:"account,omitempty"`
}

// MuteListResp lists the muted conversations.
type MuteListResp struct {
	ConvIDs []string `json:"conv_ids"`
}

// NoticeSyncReq asks for notices with seq > AfterSeq, oldest first.
type NoticeSyncReq struct {
	AfterSeq int64 `json:"after_seq"`
	Limit    int   `json:"limit,omitempty"`
}

// NoticeSyncResp carries a page of notices.
type NoticeSyncResp struct {
	Notices []Notice `json:"notices"`
	HasMore bool     `json:"has_more"`
	// Reset: the stream no longer keeps some notices after AfterSeq (it
	// keeps the newest 1000 per account), or AfterSeq is past the stream's
	// newest notice (the server's data was wiped or restored from an older
	// copy), so the page starts at the oldest kept one. The client must
	// reload its relationships (friends, pending requests, blacklist,
	// mutes) from scratch, take the page's notices as its position (none:
	// position 0), and apply these notices and the following ones over what
	// it loaded.
	Reset bool `json:"reset,omitempty"`
}

// Notice kinds.
const (
	NoticeFriendRequest  = "friend.request"  // From asked To (both get it)
	NoticeFriendAdded    = "friend.added"    // From and To are friends now
	NoticeFriendRejected = "friend.rejected" // To rejected From's request (From is the rejecter)
	NoticeFriendDeleted  = "friend.deleted"  // From ended the friendship with To
	NoticeFriendAlias    = "friend.alias"    // the account's remark on To changed (own devices only)
	NoticeBlockAdded     = "blacklist.added" // the account blocked To (own devices only)
	NoticeBlockRemoved   = "blacklist.removed"
	NoticeMuteAdded      = "mute.added" // the account muted ConvID (own devices only)
	NoticeMuteRemoved    = "mute.removed"
	NoticeProfile        = "profile.updated" // the account's own profile changed
	NoticeSystem         = "system"          // sent by the app server (Body)
)

// Notice is one entry of an account's notice stream.
type Notice struct {
	Seq     int64           `json:"seq"`
	Kind    string          `json:"kind"`
	From    string          `json:"from,omitempty"` // who acted
	To      string          `json:"to,omitempty"`   // the other account
	Message string          `json:"message,omitempty"`
	Alias   string          `json:"alias,omitempty"`
	ConvID  string          `json:"conv_id,omitempty"`
	Profile *Profile        `json:"profile,omitempty"`
	Body    json.RawMessage `json:"body,omitempty"`
	Time    int64           `json:"time"`
}
