package imapi

// Super-large groups (up to 100,000 members by default) use read diffusion:
// each message is stored once in the group's timeline (conversation
// SuperConvID, type ConvSuper) and members sync it by the group sequence;
// nothing is written per member per message. A member's read position is
// stored only when the member reads, so unread = the group's last seq − the
// member's read seq (sending moves the sender's read position to its own
// message, so one's own messages never count as unread).
//
// Online members get pushes through one bus subject per group that a
// gateway subscribes to while it holds at least one session of a member (it
// learns a session's super-groups from the login answer and from SuperEvent
// pushes), so one publish reaches each such gateway once and the gateway
// fans out locally (core/internal/buswire.SuperSubject).

// ConvSuper is the conversation type of super-groups.
const ConvSuper = 4

// MentionAll in SendReq.Mentions of a super-group message mentions every
// member (only the owner may use it). It is stored once, not per member.
const MentionAll = "@all"

// ErrGroupFull refuses adding members beyond a super-group's member limit
// (service.super.max_members, default 100,000). The batch is not applied.
const ErrGroupFull Code = 1201

// Super-group ops: SvcGroup commands 20–39.
var (
	OpSuperCreate  = Op{SvcGroup, 20} // SuperCreateReq → SuperGroup
	OpSuperAdd     = Op{SvcGroup, 21} // SuperMembersReq → SuperMembersResp
	OpSuperRemove  = Op{SvcGroup, 22} // SuperMembersReq → SuperMembersResp
	OpSuperInfo    = Op{SvcGroup, 23} // GroupRef → SuperGroup
	OpSuperMembers = Op{SvcGroup, 24} // SuperPageReq → SuperPage
	OpSuperList    = Op{SvcGroup, 25} // empty → SuperListResp
	OpSuperLeave   = Op{SvcGroup, 26} // GroupRef → empty
	OpSuperDismiss = Op{SvcGroup, 27} // GroupRef → empty
	OpSuperEvent   = Op{SvcGroup, 28} // push: SuperEvent
)

func init() {
	codeText[ErrGroupFull] = "group member limit reached"
	Register(OpSuperCreate, "super.create")
	Register(OpSuperAdd, "super.add")
	Register(OpSuperRemove, "super.remove")
	Register(OpSuperInfo, "super.info")
	Register(OpSuperMembers, "super.members")
	Register(OpSuperList, "super.list")
	Register(OpSuperLeave, "super.leave")
	Register(OpSuperDismiss, "super.dismiss")
	Register(OpSuperEvent, "super.event")
}

// SuperConvID is the id of a super-group's conversation.
func SuperConvID(groupID string) string { return "s:" + groupID }

// SuperCreateReq creates a super-group owned by the caller with up to one
// batch of initial members; more are added with OpSuperAdd.
type SuperCreateReq struct {
	Name    string   `json:"name"`
	Members []string `json:"members,omitempty"`
}

// SuperMembersReq adds or removes a batch of members.
type SuperMembersReq struct {
	GroupID string   `json:"group_id"`
	Members []string `json:"members"`
}

// SuperMembersResp tells which accounts were actually added or removed
// (others already were, or were not, members) and the new member count.
type SuperMembersResp struct {
	Changed []string `json:"changed"`
	Count   int      `json:"count"`
}

// SuperGroup describes a super-group (its members are paged separately).
type SuperGroup struct {
	GroupID    string `json:"group_id"`
	Name       string `json:"name"`
	Owner      string `json:"owner"`
	Count      int    `json:"count"`
	MaxMembers int    `json:"max_members"`
	LastSeq    int64  `json:"last_seq"`
	Created    int64  `json:"created"`
}

// SuperPageReq asks for members after the account After (in account
// order), at most Limit.
type SuperPageReq struct {
	GroupID string `json:"group_id"`
	After   string `json:"after,omitempty"`
	Limit   int    `json:"limit,omitempty"`
}

// SuperPage is one page of members; Next is the After of the next page
// ("" when this is the last one).
type SuperPage struct {
	Members []string `json:"members"`
	Next    string   `json:"next,omitempty"`
}

// SuperListResp lists the caller's super-groups.
type SuperListResp struct {
	Groups []SuperGroup `json:"groups"`
}

// SuperEvent tells an account that it joined or left a super-group (on the
// account's subject), or every online member that the group was dismissed
// (on the group's subject). Membership changes of others are not pushed to
// the whole group: at 100,000 members that would be a storm.
type SuperEvent struct {
	GroupID string `json:"group_id"`
	Kind    string `json:"kind"` // joined, removed, left, dismissed
	By      string `json:"by"`
}

// Super-group event kinds.
const (
	SuperJoined    = "joined"
	SuperRemoved   = "removed"
	SuperLeft      = "left"
	SuperDismissed = "dismissed"
)
