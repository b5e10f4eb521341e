package sdk

import (
	"context"

	"github.com/longlink/longlink/core/imapi"
)

// CreateGroup creates a group owned by the caller with req.Members;
// req.InviteMode says who may add members later: imapi.GroupInviteAll
// (default, any member) or imapi.GroupInviteManagers (the owner and
// managers; a member's add is refused with imapi.ErrInviteForbidden).
func (c *Client) CreateGroup(ctx context.Context, req imapi.GroupCreateReq) (imapi.Group, error) {
	var g imapi.Group
	err := c.Request(ctx, imapi.OpGroupCreate, req, &g)
	return g, err
}

// AddGroupMembers adds accounts to a group (see CreateGroup for who may).
func (c *Client) AddGroupMembers(ctx context.Context, groupID string, accounts ...string) error {
	return c.Request(ctx, imapi.OpGroupAdd, imapi.GroupMembersReq{GroupID: groupID, Members: accounts}, nil)
}

// UpdateGroup changes a group's name, announcement, avatar, whether plain
// members may change them, or its invite mode (the owner and managers;
// nil fields are kept; upd.GroupID names the group). Members get a group
// event of kind "updated".
func (c *Client) UpdateGroup(ctx context.Context, upd imapi.GroupUpdateReq) (imapi.Group, error) {
	var g imapi.Group
	err := c.Request(ctx, imapi.OpGroupUpdate, upd, &g)
	return g, err
}

// SetGroupRole makes a member a manager (imapi.GroupRoleManager) or a plain
// member again (imapi.GroupRoleMember); the owner only.
func (c *Client) SetGroupRole(ctx context.Context, groupID, account, role string) error {
	return c.Request(ctx, imapi.OpGroupRole, imapi.GroupRoleReq{GroupID: groupID, Account: account, Role: role}, nil)
}

// TransferGroup hands the group to another member; the owner only.
func (c *Client) TransferGroup(ctx context.Context, groupID, account string) error {
	return c.Request(ctx, imapi.OpGroupTransfer, imapi.GroupTransferReq{GroupID: groupID, Account: account}, nil)
}
