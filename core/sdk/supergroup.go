package sdk

import (
	"context"
	"encoding/json"

	"github.com/longlink/longlink/core/imapi"
)

// Super-groups (up to 100,000 members by default): messages are sent with
// SendText(ctx, imapi.ConvSuper, groupID, text) or Send, arrive as
// EventMessage like any other (conversation imapi.SuperConvID(groupID)) and
// are synced by the group sequence after a reconnect. Membership events
// concerning this account (joined, removed, left, dismissed) arrive as
// EventPush with Op imapi.OpSuperEvent; SuperEventOf decodes them.

// SuperCreate creates a super-group owned by this account with up to one
// batch of members.
func (c *Client) SuperCreate(ctx context.Context, name string, members []string) (imapi.SuperGroup, error) {
	var g imapi.SuperGroup
	err := c.Request(ctx, imapi.OpSuperCreate, imapi.SuperCreateReq{Name: name, Members: members}, &g)
	return g, err
}

// SuperAdd adds a batch of members (owner only). imapi.ErrGroupFull when
// the member limit would be exceeded.
func (c *Client) SuperAdd(ctx context.Context, groupID string, members []string) (imapi.SuperMembersResp, error) {
	var r imapi.SuperMembersResp
	err := c.Request(ctx, imapi.OpSuperAdd, imapi.SuperMembersReq{GroupID: groupID, Members: members}, &r)
	return r, err
}

// SuperRemove removes a batch of members (owner only).
func (c *Client) SuperRemove(ctx context.Context, groupID string, members []string) (imapi.SuperMembersResp, error) {
	var r imapi.SuperMembersResp
	err := c.Request(ctx, imapi.OpSuperRemove, imapi.SuperMembersReq{GroupID: groupID, Members: members}, &r)
	return r, err
}

// SuperInfo describes a super-group this account belongs to.
func (c *Client) SuperInfo(ctx context.Context, groupID string) (imapi.SuperGroup, error) {
	var g imapi.SuperGroup
	err := c.Request(ctx, imapi.OpSuperInfo, imapi.GroupRef{GroupID: groupID}, &g)
	return g, err
}

// SuperMembers returns one page of members after the account after ("" for
// the first page); page.Next is the after of the next page.
func (c *Client) SuperMembers(ctx context.Context, groupID, after string, limit int) (imapi.SuperPage, error) {
	var p imapi.SuperPage
	err := c.Request(ctx, imapi.OpSuperMembers, imapi.SuperPageReq{GroupID: groupID, After: after, Limit: limit}, &p)
	return p, err
}

// SuperList lists this account's super-groups.
func (c *Client) SuperList(ctx context.Context) ([]imapi.SuperGroup, error) {
	var r imapi.SuperListResp
	err := c.Request(ctx, imapi.OpSuperList, nil, &r)
	return r.Groups, err
}

// SuperLeave leaves a super-group (not the owner).
func (c *Client) SuperLeave(ctx context.Context, groupID string) error {
	return c.Request(ctx, imapi.OpSuperLeave, imapi.GroupRef{GroupID: groupID}, nil)
}

// SuperDismiss dismisses a super-group (owner only).
func (c *Client) SuperDismiss(ctx context.Context, groupID string) error {
	return c.Request(ctx, imapi.OpSuperDismiss, imapi.GroupRef{GroupID: groupID}, nil)
}

// SuperEventOf returns the super-group membership event an Event carries.
func SuperEventOf(ev Event) (*imapi.SuperEvent, bool) {
	if ev.Kind != EventPush || ev.Op != imapi.OpSuperEvent {
		return nil, false
	}
	var se imapi.SuperEvent
	if err := json.Unmarshal(ev.Body, &se); err != nil || se.GroupID == "" {
		return nil, false
	}
	return &se, true
}
