package sdk

// Chatrooms: the app's server creates the room, issues a short-lived entry
// token for the account and tells the client which addresses to use (the
// server API's entry points); the client enters with the token and gets
// the room's recent messages. Room messages then arrive batched: an
// EventPush with Op imapi.OpRoomMessages, decoded by RoomBatchOf; room
// events (mutes, kicks, roles, close) arrive as imapi.OpRoomEvent,
// decoded by RoomEventOf. Rooms are not conversations: there is no sync
// and no unread state. After a reconnect the client enters its rooms again
// by itself (rejoin.go): with the token it holds, or with a fresh one from
// Config.RoomToken when that one is refused, and delivers the messages it
// missed from the room's recent history, none twice.
//
//	r, _ := c.RoomEnter(ctx, "lobby", token, 20)   // r.History: the last 20
//	_, _ = c.RoomSendText(ctx, "lobby", "hi all")
//	for ev := range c.Events() {
//		if b, ok := sdk.RoomBatchOf(ev); ok { for _, m := range b.Messages { … } }
//	}

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/longlink/longlink/core/imapi"
)

// RoomEnter enters a room with an entry token from the app's server and
// returns the room, the caller's role and up to history recent messages
// (0: the server's default), oldest first.
//
// The client remembers the room and the token: after a reconnect it enters
// again by itself (see Config.RoomToken and EventRoom).
func (c *Client) RoomEnter(ctx context.Context, roomID, token string, history int) (imapi.RoomEnterResp, error) {
	// The gateway puts the session in the room before the answer, so
	// batches may come first, with messages the history also has: the
	// delivery loop holds them until the answer (posted before the request
	// goes out, so it is in place before any of them arrives).
	c.post(roomEntering{room: roomID})
	var out imapi.RoomEnterResp
	err := c.Request(ctx, imapi.OpRoomEnter, imapi.RoomEnterReq{RoomID: roomID, Token: token, History: history}, &out)
	if err != nil {
		c.post(roomEntered{room: roomID, failed: true})
		return out, err
	}
	c.mu.Lock()
	c.rooms[roomID] = token
	c.mu.Unlock()
	c.post(roomEntered{room: roomID, last: lastRoomSeq(&out)})
	return out, nil
}

// RoomLeave leaves a room (closing the connection leaves every room too);
// the client no longer enters it again after a reconnect.
func (c *Client) RoomLeave(ctx context.Context, roomID string) error {
	c.forgetRoom(roomID)
	return c.Request(ctx, imapi.OpRoomLeave, imapi.RoomRef{RoomID: roomID}, nil)
}

// Rooms lists the rooms the client is in (and enters again after a
// reconnect).
func (c *Client) Rooms() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.rooms))
	for id := range c.rooms {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// RoomSend sends a message of type typ with a JSON body to a room.
func (c *Client) RoomSend(ctx context.Context, roomID, typ string, body json.RawMessage) (imapi.RoomSendAck, error) {
	var ack imapi.RoomSendAck
	err := c.Request(ctx, imapi.OpRoomSend, imapi.RoomSendReq{RoomID: roomID, ClientMsgID: NewClientMsgID(), Type: typ, Body: body}, &ack)
	return ack, err
}

// RoomSendText sends {"text": text} to a room.
func (c *Client) RoomSendText(ctx context.Context, roomID, text string) (imapi.RoomSendAck, error) {
	b, err := json.Marshal(map[string]string{"text": text})
	if err != nil {
		return imapi.RoomSendAck{}, fmt.Errorf("sdk: encode text: %w", err)
	}
	return c.RoomSend(ctx, roomID, "text", b)
}

// RoomMembers returns one page of the accounts in a room, in account
// order, after the account after ("" for the first page); the answer's
// Next is the after of the next page, "" at the end.
func (c *Client) RoomMembers(ctx context.Context, roomID, after string, limit int) (imapi.RoomMembersResp, error) {
	var out imapi.RoomMembersResp
	err := c.Request(ctx, imapi.OpRoomMembers, imapi.RoomMembersReq{RoomID: roomID, After: after, Limit: limit}, &out)
	return out, err
}

// RoomHistory returns up to limit recent messages, oldest first.
func (c *Client) RoomHistory(ctx context.Context, roomID string, limit int) ([]imapi.RoomMessage, error) {
	var out imapi.RoomHistoryResp
	err := c.Request(ctx, imapi.OpRoomHistory, imapi.RoomHistoryReq{RoomID: roomID, Limit: limit}, &out)
	return out.Messages, err
}

// RoomInfo describes a room the caller is in.
func (c *Client) RoomInfo(ctx context.Context, roomID string) (imapi.RoomInfo, error) {
	var out imapi.RoomInfo
	err := c.Request(ctx, imapi.OpRoomInfo, imapi.RoomRef{RoomID: roomID}, &out)
	return out, err
}

// RoomSetRole makes account a manager, member or guest (owner only).
func (c *Client) RoomSetRole(ctx context.Context, roomID, account, role string) error {
	return c.Request(ctx, imapi.OpRoomSetRole, imapi.RoomRoleReq{RoomID: roomID, Account: account, Role: role}, nil)
}

// RoomMute mutes (for d, or until unmuted when d is 0) or unmutes an
// account; owner and managers, on accounts of a lower role.
func (c *Client) RoomMute(ctx context.Context, roomID, account string, muted bool, d time.Duration) error {
	return c.Request(ctx, imapi.OpRoomMute, imapi.RoomMuteReq{RoomID: roomID, Account: account, Muted: muted, DurationSec: int(d / time.Second)}, nil)
}

// RoomMuteAll mutes or unmutes the whole room: only the owner and managers
// may send while it is muted.
func (c *Client) RoomMuteAll(ctx context.Context, roomID string, muted bool) error {
	return c.Request(ctx, imapi.OpRoomMute, imapi.RoomMuteReq{RoomID: roomID, Muted: muted}, nil)
}

// RoomKick removes an account's sessions from the room and keeps it out
// for ban (0: it may enter again with a new token).
func (c *Client) RoomKick(ctx context.Context, roomID, account, reason string, ban time.Duration) error {
	return c.Request(ctx, imapi.OpRoomKick, imapi.RoomKickReq{RoomID: roomID, Account: account, Reason: reason, BanSec: int(ban / time.Second)}, nil)
}

// RoomClose closes a room (owner only).
func (c *Client) RoomClose(ctx context.Context, roomID string) error {
	return c.Request(ctx, imapi.OpRoomClose, imapi.RoomRef{RoomID: roomID}, nil)
}

// RoomBatchOf decodes a batch of room messages from an event of Events().
func RoomBatchOf(ev Event) (imapi.RoomBatch, bool) {
	if ev.Kind != EventPush || ev.Op != imapi.OpRoomMessages {
		return imapi.RoomBatch{}, false
	}
	var b imapi.RoomBatch
	if err := json.Unmarshal(ev.Body, &b); err != nil {
		return imapi.RoomBatch{}, false
	}
	return b, true
}

// RoomEventOf decodes a room event from an event of Events().
func RoomEventOf(ev Event) (imapi.RoomEvent, bool) {
	if ev.Kind != EventPush || ev.Op != imapi.OpRoomEvent {
		return imapi.RoomEvent{}, false
	}
	var re imapi.RoomEvent
	if err := json.Unmarshal(ev.Body, &re); err != nil {
		return imapi.RoomEvent{}, false
	}
	return re, true
}
