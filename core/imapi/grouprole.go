package imapi

// Group profile, roles and ownership (SvcGroup, commands 9–19).
//
// Roles: the owner (one), managers and members. The owner and managers
// change the group's name, announcement and avatar (any member too when
// AnyoneUpdates is set, which only they can set); managers remove plain
// members; only the owner names managers, transfers ownership and
// dismisses the group. Every change is a GroupEvent pushed to all members:
// "updated" (with the group), "role" (Members and Role), "transferred"
// (Members holds the new owner).
//
// Who adds members is the group's invite mode, set at creation and by
// group.update (owner and managers only): GroupInviteAll (the default, as
// before the mode existed) lets any member add, GroupInviteManagers only
// the owner and managers; a plain member's add is then refused with
// ErrInviteForbidden.
var (
	OpGroupUpdate   = Op{SvcGroup, 9}  // GroupUpdateReq → Group
	OpGroupRole     = Op{SvcGroup, 10} // GroupRoleReq → empty
	OpGroupTransfer = Op{SvcGroup, 11} // GroupTransferReq → empty
)

// Invite modes of a group.
const (
	GroupInviteAll      = "all"      // any member adds members (default)
	GroupInviteManagers = "managers" // only the owner and managers add
)

// ErrInviteForbidden refuses a plain member's group.add in a group whose
// invite mode is GroupInviteManagers.
const ErrInviteForbidden Code = 1202

func init() {
	codeText[ErrInviteForbidden] = "only the owner and managers add members to this group"
	Register(OpGroupUpdate, "group.update")
	Register(OpGroupRole, "group.role")
	Register(OpGroupTransfer, "group.transfer")
}

// Group roles.
const (
	GroupRoleOwner   = "owner"
	GroupRoleManager = "manager"
	GroupRoleMember  = "member"
)

// Limits of a group's profile.
const (
	MaxGroupName         = 128  // bytes
	MaxGroupAnnouncement = 1024 // bytes
	MaxGroupAvatar       = 1024 // bytes
)

// GroupUpdateReq changes a group; absent fields are kept.
type GroupUpdateReq struct {
	GroupID       string  `json:"group_id"`
	Name          *string `json:"name,omitempty"`
	Announcement  *string `json:"announcement,omitempty"`
	Avatar        *string `json:"avatar,omitempty"`
	AnyoneUpdates *bool   `json:"anyone_updates,omitempty"`
	InviteMode    *string `json:"invite_mode,omitempty"` // GroupInviteAll or GroupInviteManagers
}

// GroupRoleReq makes a member a manager or a plain member again.
type GroupRoleReq struct {
	GroupID string `json:"group_id"`
	Account string `json:"account"`
	Role    string `json:"role"` // manager or member
}

// GroupTransferReq hands the group to another member.
type GroupTransferReq struct {
	GroupID string `json:"group_id"`
	Account string `json:"account"`
}
