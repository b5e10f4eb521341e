package sdk

import (
	"context"
	"sync/atomic"

	"github.com/longlink/longlink/core/imapi"
)

// Profiles and relationships.
//
// Relationship changes (friend requests, accepts, rejects, deletes, aliases,
// blacklist and mute changes, the account's own profile changes) arrive as
// EventNotice, once each and in the order of the account's notice stream,
// on every device: pushed notices are delivered directly, and after every
// (re)connection the client fetches the notices after the last one it
// delivered (Config.LastNoticeSeq on a fresh start; LastNoticeSeq to save
// it). When the server no longer keeps every notice since then (it keeps
// the newest 1000), the client loads the relationships from scratch and
// delivers them as EventRelationsReset before the notices it still gets.
// A friend's profile change arrives as EventProfile while online.

// noticeState is the delivery loop's view of the notice stream.
type noticeState struct {
	last    int64 // last notice seq delivered
	maxSeen int64 // highest seq the server has told us about
	syncing bool
	// missed: a push came during the running sync (which may have been
	// answered before it), so another sync follows.
	missed bool
	// behind: the application was behind when a notice after last was
	// due; they are fetched again once it caught up.
	behind bool
	// delivered mirrors last for LastNoticeSeq (read outside the loop).
	delivered atomic.Int64
}

// The delivery loop's inputs about notices.
type (
	// noticeSyncDue: a connection came up; fetch the notices missed.
	noticeSyncDue struct{}
	// noticePage is one page of notices after the position.
	noticePage struct {
		notices []imapi.Notice
		hasMore bool
		reset   *Relations // the server's stream does not continue this client's position
		err     error
	}
)

// Relations is a fresh copy of the account's relationships, loaded when
// the notice stream no longer holds every notice since the last one the
// client delivered, or never reached it (EventRelationsReset; the server's
// data was wiped or restored): the app replaces what it derived
// from notices with it, then applies the notices that follow as usual
// (each describes a change the copy may already hold; applied in order
// they end in the current state).
type Relations struct {
	Friends   []imapi.Friend
	Requests  []imapi.FriendRequest // pending, to and from the account
	Blacklist []string
	Mutes     []string // muted conversation ids
}

// loadRelations fetches the account's relationships from scratch.
func (c *Client) loadRelations(ctx context.Context) (*Relations, error) {
	r := &Relations{}
	var err error
	if r.Friends, err = c.Friends(ctx); err != nil {
		return nil, err
	}
	if r.Requests, err = c.FriendRequests(ctx); err != nil {
		return nil, err
	}
	if r.Blacklist, err = c.Blacklist(ctx); err != nil {
		return nil, err
	}
	if r.Mutes, err = c.Mutes(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// LastNoticeSeq is the seq of the last notice delivered, for an application
// that persists it and passes it back in Config.LastNoticeSeq.
func (c *Client) LastNoticeSeq() int64 { return c.loop.notices.delivered.Load() }

func (noticeSyncDue) handle(d *delivery) { d.startNoticeSync() }

// startNoticeSync fetches the notices after the last delivered one (the
// request runs aside and posts its page back), unless the application is
// behind: then they are fetched once it caught up.
func (d *delivery) startNoticeSync() {
	ns := &d.notices
	if d.behind {
		ns.behind = true
		return
	}
	if ns.syncing {
		return
	}
	ns.syncing, ns.missed = true, false
	after := ns.last
	c := d.c
	go func() {
		var resp imapi.NoticeSyncResp
		err := c.Request(c.ctx, imapi.OpNoticeSync, imapi.NoticeSyncReq{AfterSeq: after, Limit: c.cfg.SyncPageSize}, &resp)
		p := noticePage{notices: resp.Notices, hasMore: resp.HasMore, err: err}
		if err == nil && resp.Reset {
			// Loaded after the page was read: the page's notices and the
			// following ones are replayed over a copy at least as new.
			p.reset, p.err = c.loadRelations(c.ctx)
		}
		c.post(p)
	}()
}

// deliverNotice hands n, the next notice, to the application and moves
// the position. It reports false when the application is behind: the
// notices from the position on are fetched again once it caught up.
func (d *delivery) deliverNotice(n *imapi.Notice) bool {
	ns := &d.notices
	if !d.offer(Event{Kind: EventNotice, Notice: n}) {
		ns.behind = true
		return false
	}
	ns.last = n.Seq
	ns.delivered.Store(n.Seq)
	return true
}

// handle delivers a synced page.
func (p noticePage) handle(d *delivery) {
	ns := &d.notices
	ns.syncing = false
	if p.err != nil {
		d.c.log.Debug("notice sync", "err", p.err)
		return // the next connection syncs again
	}
	if p.reset != nil {
		if !d.offer(Event{Kind: EventRelationsReset, Relations: p.reset}) {
			ns.behind = true // the sync after catching up is reset again
			return
		}
		// The server's position replaces this client's: the page starts
		// the stream it keeps. That matters when the client was ahead (the
		// server's data wiped or restored): kept as it was, the position
		// would filter out every notice to come.
		ns.last = 0
		if len(p.notices) > 0 {
			ns.last = p.notices[0].Seq - 1
		}
		ns.delivered.Store(ns.last)
	}
	for i := range p.notices {
		n := &p.notices[i]
		// Sync answers are authoritative: a hole means the stream no
		// longer keeps those notices.
		if n.Seq > ns.last && !d.deliverNotice(n) {
			return
		}
	}
	switch {
	case p.hasMore && len(p.notices) > 0, ns.missed && ns.maxSeen > ns.last:
		d.startNoticeSync()
	default:
		// Everything up to the server's answer is delivered; a seq seen
		// before the sync began and not returned no longer exists.
		ns.maxSeen = ns.last
	}
}

// onNoticePush delivers a pushed notice in order, or syncs over a gap.
func (d *delivery) onNoticePush(body []byte) {
	n, err := decode[imapi.Notice](body)
	if err != nil || n.Seq <= 0 {
		d.c.log.Warn("bad notice push", "err", err)
		return
	}
	ns := &d.notices
	ns.maxSeen = max(ns.maxSeen, n.Seq)
	switch {
	case n.Seq <= ns.last: // a duplicate
	case ns.behind: // the sync after the application caught up fetches it
	case n.Seq == ns.last+1 && !ns.syncing:
		d.deliverNotice(n)
	case ns.syncing:
		ns.missed = true // fetched by the sync that follows the running one
	default:
		d.startNoticeSync() // a gap: fetch what is missing
	}
}

// Profiles returns the profiles of the accounts that exist.
func (c *Client) Profiles(ctx context.Context, accounts ...string) ([]imapi.Profile, error) {
	var resp imapi.ProfilesResp
	err := c.Request(ctx, imapi.OpProfileGet, imapi.ProfilesReq{Accounts: accounts}, &resp)
	return resp.Profiles, err
}

// UpdateProfile changes the account's profile; nil fields are kept.
func (c *Client) UpdateProfile(ctx context.Context, upd imapi.ProfileUpdateReq) (imapi.Profile, error) {
	var p imapi.Profile
	err := c.Request(ctx, imapi.OpProfileUpdate, upd, &p)
	return p, err
}

// RequestFriend asks account to become a friend. accepted is true when
// account had already asked: the two are friends now.
func (c *Client) RequestFriend(ctx context.Context, account, message string) (accepted bool, err error) {
	var resp imapi.FriendRequestResp
	err = c.Request(ctx, imapi.OpFriendRequest, imapi.FriendRequestReq{Account: account, Message: message}, &resp)
	return resp.Accepted, err
}

// AcceptFriend accepts account's request; alias is an optional remark.
func (c *Client) AcceptFriend(ctx context.Context, account, alias string) error {
	return c.Request(ctx, imapi.OpFriendAccept, imapi.FriendAnswerReq{Account: account, Alias: alias}, nil)
}

// RejectFriend rejects account's request, with an optional message.
func (c *Client) RejectFriend(ctx context.Context, account, message string) error {
	return c.Request(ctx, imapi.OpFriendReject, imapi.FriendAnswerReq{Account: account, Message: message}, nil)
}

// DeleteFriend ends the friendship with account (both ways).
func (c *Client) DeleteFriend(ctx context.Context, account string) error {
	return c.Request(ctx, imapi.OpFriendDelete, imapi.AccountRef{Account: account}, nil)
}

// SetFriendAlias sets the account's own remark on a friend ("" clears it).
func (c *Client) SetFriendAlias(ctx context.Context, account, alias string) error {
	return c.Request(ctx, imapi.OpFriendAlias, imapi.FriendAliasReq{Account: account, Alias: alias}, nil)
}

// Friends lists the account's friends.
func (c *Client) Friends(ctx context.Context) ([]imapi.Friend, error) {
	var resp imapi.FriendListResp
	err := c.Request(ctx, imapi.OpFriendList, nil, &resp)
	return resp.Friends, err
}

// FriendRequests lists the pending requests to and from the account.
func (c *Client) FriendRequests(ctx context.Context) ([]imapi.FriendRequest, error) {
	var resp imapi.FriendRequestsResp
	err := c.Request(ctx, imapi.OpFriendRequests, nil, &resp)
	return resp.Requests, err
}

// Block adds account to the blacklist.
func (c *Client) Block(ctx context.Context, account string) error {
	return c.Request(ctx, imapi.OpBlockAdd, imapi.AccountRef{Account: account}, nil)
}

// Unblock removes account from the blacklist.
func (c *Client) Unblock(ctx context.Context, account string) error {
	return c.Request(ctx, imapi.OpBlockRemove, imapi.AccountRef{Account: account}, nil)
}

// Blacklist lists the blocked accounts.
func (c *Client) Blacklist(ctx context.Context) ([]string, error) {
	var resp imapi.AccountsResp
	err := c.Request(ctx, imapi.OpBlockList, nil, &resp)
	return resp.Accounts, err
}

// Mute mutes a conversation (ConvID, or Account for the 1:1 conversation
// with it): its messages still arrive and sync, without offline push.
func (c *Client) Mute(ctx context.Context, m imapi.MuteReq) error {
	return c.Request(ctx, imapi.OpMuteAdd, m, nil)
}

// Unmute undoes Mute.
func (c *Client) Unmute(ctx context.Context, m imapi.MuteReq) error {
	return c.Request(ctx, imapi.OpMuteRemove, m, nil)
}

// Mutes lists the muted conversations.
func (c *Client) Mutes(ctx context.Context) ([]string, error) {
	var resp imapi.MuteListResp
	err := c.Request(ctx, imapi.OpMuteList, nil, &resp)
	return resp.ConvIDs, err
}
