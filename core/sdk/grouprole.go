package sdk

import (
	"context"

	"github.com/longlink/longlink/core/imapi"
)

// UpdateGroup changes a group's name, announcement, avatar or whether plain
// members may change them (nil fields are kept; upd.GroupID names the
// group). Members get a group event of kind "updated".
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
