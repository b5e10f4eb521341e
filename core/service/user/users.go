// Package user is the users-and-relations domain of the app services:
// profiles, friends and friend requests, the blacklist, muted
// conversations, and the per-account notice stream that carries every
// change of them to all the account's devices.
package user

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"slices"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/longlink/longlink/core/imapi"

	"github.com/longlink/longlink/core/internal/buswire"
	"github.com/longlink/longlink/core/service/internal/dispatch"
	"github.com/longlink/longlink/core/service/internal/node"
	"github.com/longlink/longlink/core/store"
)

// Limits cap an account's relationships.
type Limits struct {
	MaxFriends, MaxBlacklist, MaxMutes int
}

// Users serves the profile and relationship ops and the server API's
// calls of them.
type Users struct {
	n       *node.Node
	cfg     Limits
	metrics *metrics
}

// New builds the users-and-relations domain.
func New(n *node.Node, cfg Limits, reg prometheus.Registerer) (*Users, error) {
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &Users{n: n, cfg: cfg, metrics: m}, nil
}

// Routes are the profile, friend, blacklist, mute and notice ops.
func (s *Users) Routes() []dispatch.Route {
	return []dispatch.Route{
		{Op: imapi.OpProfileGet, Handle: s.profiles},
		{Op: imapi.OpProfileUpdate, Handle: s.profileUpdate},
		{Op: imapi.OpFriendRequest, Handle: s.friendRequest},
		{Op: imapi.OpFriendAccept, Handle: s.friendAnswer(true)},
		{Op: imapi.OpFriendReject, Handle: s.friendAnswer(false)},
		{Op: imapi.OpFriendDelete, Handle: s.friendDelete},
		{Op: imapi.OpFriendAlias, Handle: s.friendAlias},
		{Op: imapi.OpFriendList, Handle: s.friendList},
		{Op: imapi.OpFriendRequests, Handle: s.friendRequests},
		{Op: imapi.OpBlockAdd, Handle: s.blockSet(true)},
		{Op: imapi.OpBlockRemove, Handle: s.blockSet(false)},
		{Op: imapi.OpBlockList, Handle: s.blockList},
		{Op: imapi.OpMuteAdd, Handle: s.muteSet(true)},
		{Op: imapi.OpMuteRemove, Handle: s.muteSet(false)},
		{Op: imapi.OpMuteList, Handle: s.muteList},
		{Op: imapi.OpNoticeSync, Handle: s.noticeSync},
	}
}

// Start has nothing to start: relationships keep no state on the node.
func (s *Users) Start(context.Context) error { return nil }

// Stop has nothing to stop.
func (s *Users) Stop(context.Context) {}

// Profiles and relationships (imapi SvcUser).
//
// Every change is stored together with the notices it produces (one per
// account concerned, in that account's notice stream) and the notices are
// then pushed to every session of those accounts, the acting session
// included, so that each device sees a gap-free stream and a device that
// was offline fetches what it missed with OpNoticeSync. Who is told:
//   - friend request, accept, reject, delete: both accounts;
//   - alias, blacklist and mute changes: the acting account only (they are
//     private to it);
//   - profile changes: the account (in its stream) and, as a best-effort
//     online push (OpProfileChanged, not stored), its friends.

// note builds a stored notice for account.
func note(account string, n imapi.Notice) store.Notice {
	b, _ := json.Marshal(&n)
	return store.Notice{Account: account, Body: b}
}

func noticeToAPI(n *store.Notice) (imapi.Notice, error) {
	var out imapi.Notice
	if err := json.Unmarshal(n.Body, &out); err != nil {
		return imapi.Notice{}, err
	}
	out.Seq, out.Time = n.Seq, n.Time
	return out, nil
}

// pushNotices pushes stored notices to every session of their accounts.
func (s *Users) pushNotices(appkey string, ns []store.Notice) {
	for i := range ns {
		n, err := noticeToAPI(&ns[i])
		if err != nil {
			s.n.Log.Error("decode stored notice", "err", err)
			continue
		}
		b, err := json.Marshal(&n)
		if err != nil {
			continue
		}
		s.n.Push(appkey, ns[i].Account, imapi.OpNotice, b, "")
	}
}

// otherUser validates an account named by the caller: well formed, not the
// caller, and an existing enabled user.
func (s *Users) otherUser(ctx context.Context, sess *buswire.Session, account string) error {
	if !imapi.ValidName(account) {
		return imapi.Errorf(imapi.ErrBadRequest, "account: want 1-64 of A-Z a-z 0-9 _ -")
	}
	if account == sess.Account {
		return imapi.Errorf(imapi.ErrBadRequest, "account: not yourself")
	}
	return s.n.RequireUsers(ctx, sess.AppKey, []string{account})
}

func (s *Users) profiles(ctx context.Context, sess *buswire.Session, body []byte) (any, error) {
	var req imapi.ProfilesReq
	if err := node.Decode(body, &req); err != nil {
		return nil, err
	}
	return s.Profiles(ctx, sess.AppKey, req.Accounts)
}

// Profiles returns the profiles of the accounts that exist (batch get, at
// most imapi.MaxProfilesAsked).
func (s *Users) Profiles(ctx context.Context, appkey string, accounts []string) (*imapi.ProfilesResp, error) {
	if len(accounts) == 0 {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "accounts: at least one")
	}
	accts, err := uniqueAccounts(accounts, imapi.MaxProfilesAsked)
	if err != nil {
		return nil, err
	}
	ps, err := s.n.Store.Profiles(ctx, appkey, accts)
	if err != nil {
		return nil, node.StoreErr(err, "profiles")
	}
	out := &imapi.ProfilesResp{Profiles: make([]imapi.Profile, len(ps))}
	for i := range ps {
		out.Profiles[i] = profileToAPI(&ps[i])
	}
	return out, nil
}

func uniqueAccounts(in []string, max int) ([]string, error) {
	if len(in) > max {
		return nil, imapi.Errorf(imapi.ErrTooLarge, "accounts: at most %d", max)
	}
	out := make([]string, 0, len(in))
	for _, a := range in {
		if !imapi.ValidName(a) {
			return nil, imapi.Errorf(imapi.ErrBadRequest, "accounts: %q is not an account", a)
		}
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out, nil
}

func profileToAPI(p *store.Profile) imapi.Profile {
	return imapi.Profile{Account: p.Account, Name: p.Name, Avatar: p.Avatar, Ext: p.Ext, Updated: p.Updated}
}

// validateProfile checks the limits of a profile update (imapi.MaxProfile*).
func validateProfile(req *imapi.ProfileUpdateReq) (store.ProfileUpdate, error) {
	var upd store.ProfileUpdate
	if req.Name == nil && req.Avatar == nil && req.Ext == nil {
		return upd, imapi.Errorf(imapi.ErrBadRequest, "nothing to update: name, avatar or ext")
	}
	if req.Name != nil {
		if len(*req.Name) > imapi.MaxProfileName {
			return upd, imapi.Errorf(imapi.ErrTooLarge, "name: at most %d bytes", imapi.MaxProfileName)
		}
		if !utf8.ValidString(*req.Name) {
			return upd, imapi.Errorf(imapi.ErrBadRequest, "name: not UTF-8")
		}
		upd.Name = req.Name
	}
	if req.Avatar != nil {
		a := *req.Avatar
		if len(a) > imapi.MaxAvatarURL {
			return upd, imapi.Errorf(imapi.ErrTooLarge, "avatar: at most %d bytes", imapi.MaxAvatarURL)
		}
		if a != "" {
			u, err := url.Parse(a)
			if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				return upd, imapi.Errorf(imapi.ErrBadRequest, "avatar: want an http or https URL")
			}
		}
		upd.Avatar = req.Avatar
	}
	if req.Ext != nil {
		if len(req.Ext) > imapi.MaxProfileExt {
			return upd, imapi.Errorf(imapi.ErrTooLarge, "ext: at most %d bytes", imapi.MaxProfileExt)
		}
		var obj map[string]json.RawMessage
		if t := bytes.TrimSpace(req.Ext); len(t) == 0 || t[0] != '{' || json.Unmarshal(t, &obj) != nil {
			return upd, imapi.Errorf(imapi.ErrBadRequest, "ext: want a JSON object")
		}
		if len(obj) > imapi.MaxProfileExtKeys {
			return upd, imapi.Errorf(imapi.ErrTooLarge, "ext: at most %d keys", imapi.MaxProfileExtKeys)
		}
		if len(obj) == 0 {
			upd.Ext = []byte{}
		} else {
			var buf bytes.Buffer
			if err := json.Compact(&buf, req.Ext); err != nil {
				return upd, imapi.Errorf(imapi.ErrBadRequest, "ext: want a JSON object")
			}
			upd.Ext = buf.Bytes()
		}
	}
	return upd, nil
}

func (s *Users) profileUpdate(ctx context.Context, sess *buswire.Session, body []byte) (any, error) {
	var req imapi.ProfileUpdateReq
	if err := node.Decode(body, &req); err != nil {
		return nil, err
	}
	return s.UpdateProfile(ctx, sess.AppKey, sess.Account, &req)
}

// UpdateProfile changes account's profile (a client for itself, or the
// app's server): every device of the account gets a profile.updated notice
// and its online friends an OpProfileChanged push.
func (s *Users) UpdateProfile(ctx context.Context, appkey, account string, req *imapi.ProfileUpdateReq) (*imapi.Profile, error) {
	upd, err := validateProfile(req)
	if err != nil {
		return nil, err
	}
	p, ns, err := s.n.Store.UpdateProfile(ctx, appkey, account, upd, func(p store.Profile) []store.Notice {
		after := profileToAPI(&p)
		return []store.Notice{note(account, imapi.Notice{Kind: imapi.NoticeProfile, From: account, Profile: &after})}
	})
	if err != nil {
		return nil, node.StoreErr(err, "user")
	}
	out := profileToAPI(&p)
	s.pushNotices(appkey, ns)
	friends, err := s.n.Store.Friends(ctx, appkey, account)
	if err != nil {
		s.n.Log.Warn("profile change: friends not told", "err", err)
		return &out, nil
	}
	if len(friends) > 0 {
		b, _ := json.Marshal(&out)
		for _, f := range friends {
			s.n.Push(appkey, f.Account, imapi.OpProfileChanged, b, "")
		}
	}
	return &out, nil
}

func (s *Users) friendRequest(ctx context.Context, sess *buswire.Session, body []byte) (any, error) {
	var req imapi.FriendRequestReq
	if err := node.Decode(body, &req); err != nil {
		return nil, err
	}
	if len(req.Message) > imapi.MaxFriendMessage || !utf8.ValidString(req.Message) {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "message: at most %d bytes of UTF-8", imapi.MaxFriendMessage)
	}
	if err := s.otherUser(ctx, sess, req.Account); err != nil {
		return nil, err
	}
	if err := s.friendRoom(ctx, sess.AppKey, sess.Account); err != nil {
		return nil, err
	}
	me, to := sess.Account, req.Account
	// A request to an account that blocks the caller looks sent (the
	// requester's devices get the usual notice) but is hidden from the
	// target: telling the requester would reveal the block.
	outcome, ns, err := s.n.Store.RequestFriend(ctx, sess.AppKey, me, to, req.Message, func(o store.RequestOutcome) []store.Notice {
		switch o {
		case store.RequestAccepted:
			n := imapi.Notice{Kind: imapi.NoticeFriendAdded, From: me, To: to}
			return []store.Notice{note(me, n), note(to, n)}
		case store.RequestHidden:
			return []store.Notice{note(me, imapi.Notice{Kind: imapi.NoticeFriendRequest, From: me, To: to, Message: req.Message})}
		}
		n := imapi.Notice{Kind: imapi.NoticeFriendRequest, From: me, To: to, Message: req.Message}
		return []store.Notice{note(me, n), note(to, n)}
	})
	if err != nil {
		if errors.Is(err, store.ErrExists) {
			return nil, imapi.Errorf(imapi.ErrConflict, "already friends")
		}
		return nil, node.StoreErr(err, "friend request")
	}
	s.pushNotices(sess.AppKey, ns)
	return &imapi.FriendRequestResp{Accepted: outcome == store.RequestAccepted}, nil
}

// friendRoom fails when account has as many friends as allowed.
func (s *Users) friendRoom(ctx context.Context, appkey, account string) error {
	n, err := s.n.Store.FriendCount(ctx, appkey, account)
	if err != nil {
		return node.StoreErr(err, "friends")
	}
	if n >= s.cfg.MaxFriends {
		s.metrics.limits.WithLabelValues("friends").Inc()
		return imapi.Errorf(imapi.ErrTooLarge, "at most %d friends", s.cfg.MaxFriends)
	}
	return nil
}

// validFriend checks the account and the alias a request names.
func validFriend(account, alias string) error {
	if !imapi.ValidName(account) {
		return imapi.Errorf(imapi.ErrBadRequest, "account: want 1-64 of A-Z a-z 0-9 _ -")
	}
	if len(alias) > imapi.MaxAlias || !utf8.ValidString(alias) {
		return imapi.Errorf(imapi.ErrBadRequest, "alias: at most %d bytes of UTF-8", imapi.MaxAlias)
	}
	return nil
}

func (s *Users) friendAnswer(accept bool) dispatch.Handler {
	return func(ctx context.Context, sess *buswire.Session, body []byte) (any, error) {
		var req imapi.FriendAnswerReq
		if err := node.Decode(body, &req); err != nil {
			return nil, err
		}
		if err := validFriend(req.Account, req.Alias); err != nil {
			return nil, err
		}
		if len(req.Message) > imapi.MaxFriendMessage || !utf8.ValidString(req.Message) {
			return nil, imapi.Errorf(imapi.ErrBadRequest, "message: at most %d bytes of UTF-8", imapi.MaxFriendMessage)
		}
		me, from := sess.Account, req.Account
		n := imapi.Notice{Kind: imapi.NoticeFriendRejected, From: me, To: from, Message: req.Message}
		if accept {
			if err := s.friendRoom(ctx, sess.AppKey, me); err != nil {
				return nil, err
			}
			n = imapi.Notice{Kind: imapi.NoticeFriendAdded, From: me, To: from}
		}
		ns, err := s.n.Store.AnswerFriend(ctx, sess.AppKey, me, from, accept, req.Alias, []store.Notice{note(me, n), note(from, n)})
		if err != nil {
			return nil, node.StoreErr(err, "friend request")
		}
		s.pushNotices(sess.AppKey, ns)
		return nil, nil
	}
}

func (s *Users) friendDelete(ctx context.Context, sess *buswire.Session, body []byte) (any, error) {
	var req imapi.AccountRef
	if err := node.Decode(body, &req); err != nil {
		return nil, err
	}
	if !imapi.ValidName(req.Account) {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "account: want 1-64 of A-Z a-z 0-9 _ -")
	}
	n := imapi.Notice{Kind: imapi.NoticeFriendDeleted, From: sess.Account, To: req.Account}
	ns, err := s.n.Store.DeleteFriend(ctx, sess.AppKey, sess.Account, req.Account, []store.Notice{note(sess.Account, n), note(req.Account, n)})
	return nil, s.friendChanged(sess.AppKey, req.Account, ns, err)
}

// friendChanged pushes the notices of a change between friends, or maps
// its error (not friends: ErrNotFriends).
func (s *Users) friendChanged(appkey, friend string, ns []store.Notice, err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return imapi.Errorf(imapi.ErrNotFriends, "%s", friend)
	} else if err != nil {
		return node.StoreErr(err, "friend")
	}
	s.pushNotices(appkey, ns)
	return nil
}

func (s *Users) friendAlias(ctx context.Context, sess *buswire.Session, body []byte) (any, error) {
	var req imapi.FriendAliasReq
	if err := node.Decode(body, &req); err != nil {
		return nil, err
	}
	if err := validFriend(req.Account, req.Alias); err != nil {
		return nil, err
	}
	n := imapi.Notice{Kind: imapi.NoticeFriendAlias, From: sess.Account, To: req.Account, Alias: req.Alias}
	ns, err := s.n.Store.SetAlias(ctx, sess.AppKey, sess.Account, req.Account, req.Alias, []store.Notice{note(sess.Account, n)})
	return nil, s.friendChanged(sess.AppKey, req.Account, ns, err)
}

func (s *Users) friendList(ctx context.Context, sess *buswire.Session, _ []byte) (any, error) {
	return s.Friends(ctx, sess.AppKey, sess.Account)
}

// Friends lists account's friends with its aliases.
func (s *Users) Friends(ctx context.Context, appkey, account string) (*imapi.FriendListResp, error) {
	fs, err := s.n.Store.Friends(ctx, appkey, account)
	if err != nil {
		return nil, node.StoreErr(err, "friends")
	}
	out := &imapi.FriendListResp{Friends: make([]imapi.Friend, len(fs))}
	for i, f := range fs {
		out.Friends[i] = imapi.Friend{Account: f.Account, Alias: f.Alias, Since: f.Since}
	}
	return out, nil
}

func (s *Users) friendRequests(ctx context.Context, sess *buswire.Session, _ []byte) (any, error) {
	rs, err := s.n.Store.FriendRequests(ctx, sess.AppKey, sess.Account)
	if err != nil {
		return nil, node.StoreErr(err, "friend requests")
	}
	out := &imapi.FriendRequestsResp{Requests: make([]imapi.FriendRequest, len(rs))}
	for i, r := range rs {
		out.Requests[i] = imapi.FriendRequest{From: r.From, To: r.To, Message: r.Message, Time: r.Time}
	}
	return out, nil
}

// ImportFriends makes owner and each of friends friends both ways without a
// request (the app server's import); both sides get friend.added notices.
// It returns the accounts newly added.
func (s *Users) ImportFriends(ctx context.Context, appkey, owner string, friends []string) ([]string, error) {
	fs, err := uniqueAccounts(friends, s.cfg.MaxFriends)
	if err != nil {
		return nil, err
	}
	if slices.Contains(fs, owner) {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "friends: not the owner")
	}
	if err := s.n.RequireUsers(ctx, appkey, append([]string{owner}, fs...)); err != nil {
		return nil, err
	}
	n, err := s.n.Store.FriendCount(ctx, appkey, owner)
	if err != nil {
		return nil, node.StoreErr(err, "friends")
	}
	if n+len(fs) > s.cfg.MaxFriends {
		s.metrics.limits.WithLabelValues("friends").Inc()
		return nil, imapi.Errorf(imapi.ErrTooLarge, "at most %d friends", s.cfg.MaxFriends)
	}
	added, ns, err := s.n.Store.AddFriends(ctx, appkey, owner, fs, func(added []string) []store.Notice {
		out := make([]store.Notice, 0, 2*len(added))
		for _, f := range added {
			n := imapi.Notice{Kind: imapi.NoticeFriendAdded, From: owner, To: f}
			out = append(out, note(owner, n), note(f, n))
		}
		return out
	})
	if err != nil {
		return nil, node.StoreErr(err, "friends")
	}
	s.pushNotices(appkey, ns)
	if added == nil {
		added = []string{}
	}
	return added, nil
}

func (s *Users) blockSet(on bool) dispatch.Handler {
	return func(ctx context.Context, sess *buswire.Session, body []byte) (any, error) {
		var req imapi.AccountRef
		if err := node.Decode(body, &req); err != nil {
			return nil, err
		}
		return nil, s.SetBlocked(ctx, sess.AppKey, sess.Account, req.Account, on)
	}
}

// SetBlocked adds target to owner's blacklist (on) or removes it. The
// owner's devices get a blacklist notice; the target is not told.
func (s *Users) SetBlocked(ctx context.Context, appkey, owner, target string, on bool) error {
	if !imapi.ValidName(target) {
		return imapi.Errorf(imapi.ErrBadRequest, "account: want 1-64 of A-Z a-z 0-9 _ -")
	}
	if target == owner {
		return imapi.Errorf(imapi.ErrBadRequest, "account: not yourself")
	}
	kind := imapi.NoticeBlockRemoved
	if on {
		if err := s.n.RequireUsers(ctx, appkey, []string{target}); err != nil {
			return err
		}
		list, err := s.n.Store.Blacklist(ctx, appkey, owner)
		if err != nil {
			return node.StoreErr(err, "blacklist")
		}
		if slices.Contains(list, target) {
			return nil
		}
		if len(list) >= s.cfg.MaxBlacklist {
			s.metrics.limits.WithLabelValues("blacklist").Inc()
			return imapi.Errorf(imapi.ErrTooLarge, "at most %d blocked accounts", s.cfg.MaxBlacklist)
		}
		kind = imapi.NoticeBlockAdded
	}
	_, ns, err := s.n.Store.SetBlocked(ctx, appkey, owner, target, on, []store.Notice{note(owner, imapi.Notice{Kind: kind, From: owner, To: target})})
	if err != nil {
		return node.StoreErr(err, "blacklist")
	}
	s.pushNotices(appkey, ns)
	return nil
}

func (s *Users) blockList(ctx context.Context, sess *buswire.Session, _ []byte) (any, error) {
	return s.Blacklist(ctx, sess.AppKey, sess.Account)
}

// Blacklist lists the accounts owner blocks.
func (s *Users) Blacklist(ctx context.Context, appkey, owner string) (*imapi.AccountsResp, error) {
	list, err := s.n.Store.Blacklist(ctx, appkey, owner)
	if err != nil {
		return nil, node.StoreErr(err, "blacklist")
	}
	if list == nil {
		list = []string{}
	}
	return &imapi.AccountsResp{Accounts: list}, nil
}

// muteConv resolves a MuteReq to a conversation the caller may mute: a 1:1
// conversation it is a party of, or a group conversation.
func muteConv(sess *buswire.Session, req *imapi.MuteReq) (string, error) {
	conv := req.ConvID
	if req.Account != "" {
		if conv != "" {
			return "", imapi.Errorf(imapi.ErrBadRequest, "conv_id or account, not both")
		}
		if !imapi.ValidName(req.Account) {
			return "", imapi.Errorf(imapi.ErrBadRequest, "account: want 1-64 of A-Z a-z 0-9 _ -")
		}
		conv = imapi.P2PConvID(sess.Account, req.Account)
	}
	typ, a, b, ok := imapi.ParseConvID(conv)
	if !ok {
		return "", imapi.Errorf(imapi.ErrBadRequest, "conv_id %q", conv)
	}
	if typ == imapi.ConvP2P && sess.Account != a && sess.Account != b {
		return "", imapi.Errorf(imapi.ErrForbidden, "not a party of %s", conv)
	}
	return conv, nil
}

func (s *Users) muteSet(on bool) dispatch.Handler {
	return func(ctx context.Context, sess *buswire.Session, body []byte) (any, error) {
		var req imapi.MuteReq
		if err := node.Decode(body, &req); err != nil {
			return nil, err
		}
		conv, err := muteConv(sess, &req)
		if err != nil {
			return nil, err
		}
		kind := imapi.NoticeMuteRemoved
		if on {
			kind = imapi.NoticeMuteAdded
			list, err := s.n.Store.Mutes(ctx, sess.AppKey, sess.Account)
			if err != nil {
				return nil, node.StoreErr(err, "mutes")
			}
			if slices.Contains(list, conv) {
				return nil, nil
			}
			if len(list) >= s.cfg.MaxMutes {
				s.metrics.limits.WithLabelValues("mutes").Inc()
				return nil, imapi.Errorf(imapi.ErrTooLarge, "at most %d muted conversations", s.cfg.MaxMutes)
			}
		}
		_, ns, err := s.n.Store.SetMuted(ctx, sess.AppKey, sess.Account, conv, on,
			[]store.Notice{note(sess.Account, imapi.Notice{Kind: kind, From: sess.Account, ConvID: conv})})
		if err != nil {
			return nil, node.StoreErr(err, "mutes")
		}
		s.pushNotices(sess.AppKey, ns)
		return nil, nil
	}
}

func (s *Users) muteList(ctx context.Context, sess *buswire.Session, _ []byte) (any, error) {
	list, err := s.n.Store.Mutes(ctx, sess.AppKey, sess.Account)
	if err != nil {
		return nil, node.StoreErr(err, "mutes")
	}
	if list == nil {
		list = []string{}
	}
	return &imapi.MuteListResp{ConvIDs: list}, nil
}

// Muted reports whether account muted convID: its messages are stored,
// pushed to online sessions and synced as usual, but offline push
// notifications should not be sent for them. An error reads as not muted
// (a notification too many rather than a lost one) and is logged.
func (s *Users) Muted(ctx context.Context, appkey, account, convID string) bool {
	m, err := s.n.Store.Muted(ctx, appkey, account, convID)
	if err != nil {
		s.n.Log.Warn("muted lookup failed", "err", err)
		return false
	}
	return m
}

// MutedAmong returns which of accounts muted convID (for a group message
// with many offline members: one query). An error reads as none muted and
// is logged.
func (s *Users) MutedAmong(ctx context.Context, appkey, convID string, accounts []string) map[string]bool {
	m, err := s.n.Store.MutedAmong(ctx, appkey, convID, accounts)
	if err != nil {
		s.n.Log.Warn("muted lookup failed", "err", err)
		return map[string]bool{}
	}
	return m
}

func (s *Users) noticeSync(ctx context.Context, sess *buswire.Session, body []byte) (any, error) {
	var req imapi.NoticeSyncReq
	if err := node.Decode(body, &req); err != nil {
		return nil, err
	}
	if req.AfterSeq < 0 {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "after_seq: must not be negative")
	}
	ns, more, err := s.n.Store.Notices(ctx, sess.AppKey, sess.Account, req.AfterSeq, s.n.Page(req.Limit))
	if err != nil {
		return nil, node.StoreErr(err, "notices")
	}
	// Sequences are gap-free per account, so a first notice past
	// after_seq+1 means the stream trimmed some the caller never got.
	reset := len(ns) > 0 && ns[0].Seq > req.AfterSeq+1
	if len(ns) == 0 && req.AfterSeq > 0 {
		// A caller ahead of the stream's newest notice holds a position
		// this server never gave out (its data was wiped or restored from
		// an older copy): nothing after it would ever come, so it starts
		// over from the stream's beginning, as after a trim.
		last, err := s.n.Store.LastNoticeSeq(ctx, sess.AppKey, sess.Account)
		if err != nil {
			return nil, node.StoreErr(err, "notices")
		}
		if last < req.AfterSeq {
			reset = true
			if ns, more, err = s.n.Store.Notices(ctx, sess.AppKey, sess.Account, 0, s.n.Page(req.Limit)); err != nil {
				return nil, node.StoreErr(err, "notices")
			}
		}
	}
	out := &imapi.NoticeSyncResp{Notices: make([]imapi.Notice, 0, len(ns)), HasMore: more, Reset: reset}
	for i := range ns {
		n, err := noticeToAPI(&ns[i])
		if err != nil {
			return nil, err
		}
		out.Notices = append(out.Notices, n)
	}
	return out, nil
}
