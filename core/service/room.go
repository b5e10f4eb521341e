package service

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/time/rate"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/store"
	"github.com/longlink/longlink/pkg/config"
)

// RoomConfig tunes chatrooms (service.rooms).
type RoomConfig struct {
	// TokenTTL is the default and maximum lifetime of a room entry token.
	// Default 5m.
	TokenTTL config.Duration `yaml:"token_ttl"`
	// HistorySize is how many recent messages a room keeps unless its
	// creator says otherwise; MaxHistorySize caps what a creator may ask.
	// Defaults 50 and 500.
	HistorySize    int `yaml:"history_size"`
	MaxHistorySize int `yaml:"max_history_size"`
	// EnterHistory is how many recent messages an enter returns when the
	// client does not say. Default 20.
	EnterHistory int `yaml:"enter_history"`
	// MsgRate is the default limit of messages per second into one room,
	// MemberRate per member of a room (token buckets with a burst of one
	// second's worth, at least 1). Defaults 200 and 5. Limits are kept per
	// service node.
	MsgRate    float64 `yaml:"msg_rate"`
	MemberRate float64 `yaml:"member_rate"`
	// GatewayTimeout: a gateway that has not announced itself for this long
	// is no longer offered as a room entry point. Default 10s.
	GatewayTimeout config.Duration `yaml:"gateway_timeout"`
	// MaxEntryPoints caps the gateways "get addresses" returns. Default 3.
	MaxEntryPoints int `yaml:"max_entry_points"`
}

// DefaultRooms returns the room defaults.
func DefaultRooms() RoomConfig {
	return RoomConfig{
		TokenTTL: config.Duration(5 * time.Minute), HistorySize: 50, MaxHistorySize: 500, EnterHistory: 20,
		MsgRate: 200, MemberRate: 5, GatewayTimeout: config.Duration(10 * time.Second), MaxEntryPoints: 3,
	}
}

func (c *RoomConfig) applyDefaults() {
	d := DefaultRooms()
	if c.TokenTTL == 0 {
		c.TokenTTL = d.TokenTTL
	}
	if c.HistorySize == 0 {
		c.HistorySize = d.HistorySize
	}
	if c.MaxHistorySize == 0 {
		c.MaxHistorySize = d.MaxHistorySize
	}
	if c.EnterHistory == 0 {
		c.EnterHistory = d.EnterHistory
	}
	if c.MsgRate == 0 {
		c.MsgRate = d.MsgRate
	}
	if c.MemberRate == 0 {
		c.MemberRate = d.MemberRate
	}
	if c.GatewayTimeout == 0 {
		c.GatewayTimeout = d.GatewayTimeout
	}
	if c.MaxEntryPoints == 0 {
		c.MaxEntryPoints = d.MaxEntryPoints
	}
}

func (c *RoomConfig) validate(errs *config.Errors) {
	if c.TokenTTL.D() < time.Second {
		errs.Addf("service.rooms.token_ttl: at least 1s")
	}
	if c.MaxHistorySize < 1 || c.HistorySize < 1 || c.HistorySize > c.MaxHistorySize {
		errs.Addf("service.rooms.history_size: must be in 1..max_history_size (%d)", c.MaxHistorySize)
	}
	if c.EnterHistory < 0 {
		errs.Addf("service.rooms.enter_history: must not be negative")
	}
	if c.MsgRate <= 0 || c.MemberRate <= 0 {
		errs.Addf("service.rooms: msg_rate and member_rate must be positive")
	}
	if c.GatewayTimeout.D() < time.Second {
		errs.Addf("service.rooms.gateway_timeout: at least 1s")
	}
	if c.MaxEntryPoints < 1 {
		errs.Addf("service.rooms.max_entry_points: at least 1")
	}
}

// RoomCreate is what the app's server gives to create a room.
type RoomCreate struct {
	RoomID        string  `json:"room_id"`
	Name          string  `json:"name"`
	Owner         string  `json:"owner"`
	GuestsCanSend bool    `json:"guests_can_send"`
	HistorySize   int     `json:"history_size,omitempty"`
	MsgRate       float64 `json:"msg_rate,omitempty"`
	MemberRate    float64 `json:"member_rate,omitempty"`
}

// RoomToken is an entry token for one account and one room.
type RoomToken struct {
	Token   string `json:"token"`
	Role    string `json:"role"`
	Expires int64  `json:"expires"` // unix seconds
}

// RoomEntryPoint is one gateway a client should enter a room through.
type RoomEntryPoint struct {
	Gateway   string   `json:"gateway"`
	Addresses []string `json:"addresses"`
	Members   int      `json:"members"` // the room's sessions on it now
}

// roomState is what a service node keeps about rooms: rate limiters and
// the live gateways heard on imapi.GatewaySubject.
type roomState struct {
	mu       sync.Mutex
	limiters map[string]*rate.Limiter // "appkey/room" and "appkey/room/account"
	gateways map[string]gatewaySeen
	sizes    map[string]roomCount // by "appkey/room"
	sub      *nats.Subscription
	stop     chan struct{}
	done     chan struct{}
}

type roomCount struct {
	n  int
	at time.Time
}

type gatewaySeen struct {
	imapi.GatewayAnnounce
	at time.Time
}

// maxLimiters bounds the limiter map; when full it starts over (a burst
// of fresh buckets is the worst that happens).
const maxLimiters = 200_000

// startRooms listens to gateway announcements.
func (s *Service) startRooms() error {
	s.rooms.limiters = map[string]*rate.Limiter{}
	s.rooms.gateways = map[string]gatewaySeen{}
	s.rooms.sizes = map[string]roomCount{}
	sub, err := s.nc.Subscribe(imapi.GatewaySubject, func(m *nats.Msg) {
		var a imapi.GatewayAnnounce
		if json.Unmarshal(m.Data, &a) != nil || a.ID == "" || len(a.Addresses) > 16 {
			return
		}
		s.rooms.mu.Lock()
		prev, known := s.rooms.gateways[a.ID]
		s.rooms.gateways[a.ID] = gatewaySeen{GatewayAnnounce: a, at: s.now()}
		s.rooms.mu.Unlock()
		if known && prev.Started != 0 && a.Started > prev.Started {
			// Restarted under the same id: what it held before is gone.
			s.dropGatewayPresence(a.ID, time.UnixMilli(a.Started), "restarted")
		}
	})
	if err != nil {
		return fmt.Errorf("service: subscribe %s: %w", imapi.GatewaySubject, err)
	}
	s.rooms.sub = sub
	s.rooms.stop, s.rooms.done = make(chan struct{}), make(chan struct{})
	go s.sweepGateways()
	return nil
}

func (s *Service) stopRooms() {
	if s.rooms.sub != nil {
		_ = s.rooms.sub.Unsubscribe()
		s.rooms.sub = nil
		close(s.rooms.stop)
		<-s.rooms.done
	}
}

// sweepGateways forgets gateways that stopped announcing themselves and
// removes the room presence they recorded: a gateway that crashed never
// sent the room.leave of its sessions. Every service node does it for the
// gateways it has heard of; doing it twice is harmless.
func (s *Service) sweepGateways() {
	defer close(s.rooms.done)
	t := time.NewTicker(max(s.cfg.Rooms.GatewayTimeout.D()/4, 100*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-s.rooms.stop:
			return
		case <-t.C:
		}
		now := s.now()
		var dead []string
		s.rooms.mu.Lock()
		for id, g := range s.rooms.gateways {
			if now.Sub(g.at) > s.cfg.Rooms.GatewayTimeout.D() {
				dead = append(dead, id)
				delete(s.rooms.gateways, id)
			}
		}
		s.rooms.mu.Unlock()
		for _, id := range dead {
			s.dropGatewayPresence(id, now, "silent")
		}
	}
}

func (s *Service) dropGatewayPresence(id string, before time.Time, why string) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout.D())
	defer cancel()
	n, err := s.st.RemoveGatewayPresence(ctx, id, before)
	if err != nil {
		s.log.Warn("room presence of a gone gateway not removed", "gateway", id, "err", err)
		return
	}
	if n > 0 {
		s.roomMetrics.stalePresence.Add(float64(n))
		s.log.Info("room presence of a gone gateway removed", "gateway", id, "why", why, "sessions", n)
	}
}

// allow takes a token from the bucket of key, made at r messages/s.
func (s *Service) allow(key string, r float64) bool {
	s.rooms.mu.Lock()
	defer s.rooms.mu.Unlock()
	l := s.rooms.limiters[key]
	if l == nil || l.Limit() != rate.Limit(r) {
		if len(s.rooms.limiters) >= maxLimiters {
			clear(s.rooms.limiters)
		}
		l = rate.NewLimiter(rate.Limit(r), max(1, int(math.Ceil(r))))
		s.rooms.limiters[key] = l
	}
	return l.AllowN(s.now(), 1)
}

// --- tokens ---

// Room tokens are HMAC-SHA256 over "appkey|room|account|role|expiry" with
// a key derived from the app's secret, so any service node verifies them
// without storing anything and they die with a secret rotation. They are
// bearer secrets: never logged.
func roomTokenKey(secret string) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("longlink room token v1"))
	return m.Sum(nil)
}

func signRoomToken(secret, payload string) string {
	m := hmac.New(sha256.New, roomTokenKey(secret))
	m.Write([]byte(payload))
	return base64.RawURLEncoding.EncodeToString([]byte(payload)) + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// verifyRoomToken checks a token for appkey, room and account and returns
// the role it grants.
func verifyRoomToken(secret, token, appkey, roomID, account string, now time.Time) (string, bool) {
	p64, sig64, ok := strings.Cut(token, ".")
	if !ok {
		return "", false
	}
	payload, err := base64.RawURLEncoding.DecodeString(p64)
	if err != nil {
		return "", false
	}
	sig, err := base64.RawURLEncoding.DecodeString(sig64)
	if err != nil {
		return "", false
	}
	m := hmac.New(sha256.New, roomTokenKey(secret))
	m.Write(payload)
	if !hmac.Equal(sig, m.Sum(nil)) {
		return "", false
	}
	f := strings.Split(string(payload), "|")
	if len(f) != 5 || f[0] != appkey || f[1] != roomID || f[2] != account {
		return "", false
	}
	exp, err := strconv.ParseInt(f[4], 10, 64)
	if err != nil || now.Unix() >= exp {
		return "", false
	}
	return f[3], true
}

// RoomTokenFor signs an entry token as IssueRoomToken does, for an app
// server (or a load generator) that holds the app secret and issues tokens
// without a round trip. role is "member" or "guest".
func RoomTokenFor(secret, appkey, roomID, account, role string, expires time.Time) string {
	return signRoomToken(secret, strings.Join([]string{appkey, roomID, account, role, strconv.FormatInt(expires.Unix(), 10)}, "|"))
}

// IssueRoomToken issues an entry token for account (member or guest) into
// a live room, valid for ttl (0 or more than the configured maximum: the
// configured token_ttl).
func (s *Service) IssueRoomToken(ctx context.Context, appkey, roomID, account, role string, ttl time.Duration) (*RoomToken, error) {
	if !ValidName(roomID) || !ValidName(account) {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "room_id and account: want 1-64 of A-Z a-z 0-9 _ -")
	}
	if role == "" {
		role = imapi.RoleMember
	}
	if role != imapi.RoleMember && role != imapi.RoleGuest {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "role: member or guest (owner and managers are set on the room)")
	}
	if ttl <= 0 || ttl > s.cfg.Rooms.TokenTTL.D() {
		ttl = s.cfg.Rooms.TokenTTL.D()
	}
	app, err := s.apps.get(ctx, appkey, s.now())
	if err != nil {
		return nil, storeErr(err, "app")
	}
	r, err := s.st.Room(ctx, appkey, roomID)
	if err != nil {
		return nil, storeErr(err, "room")
	}
	if r.Closed {
		return nil, imapi.Errorf(imapi.ErrNotFound, "room closed")
	}
	exp := s.now().Add(ttl)
	return &RoomToken{Token: RoomTokenFor(app.Secret, appkey, roomID, account, role, exp), Role: role, Expires: exp.Unix()}, nil
}

// --- server-side room management ---

// CreateRoom creates a room owned by an existing account.
func (s *Service) CreateRoom(ctx context.Context, appkey string, req *RoomCreate) (*imapi.RoomInfo, error) {
	if !ValidName(req.RoomID) || !ValidName(req.Owner) {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "room_id and owner: want 1-64 of A-Z a-z 0-9 _ -")
	}
	if len(req.Name) > 128 {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "name: at most 128 bytes")
	}
	if req.HistorySize == 0 {
		req.HistorySize = s.cfg.Rooms.HistorySize
	}
	if req.HistorySize < 1 || req.HistorySize > s.cfg.Rooms.MaxHistorySize {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "history_size: 1..%d", s.cfg.Rooms.MaxHistorySize)
	}
	if req.MsgRate < 0 || req.MemberRate < 0 || req.MsgRate > 1e6 || req.MemberRate > 1e6 {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "msg_rate and member_rate: 0 (default) to 1e6")
	}
	ok, err := s.st.UsersExist(ctx, appkey, []string{req.Owner})
	if err != nil {
		return nil, storeErr(err, "owner")
	}
	if !ok[req.Owner] {
		return nil, imapi.Errorf(imapi.ErrNotFound, "owner %s not found", req.Owner)
	}
	r := store.Room{AppKey: appkey, RoomID: req.RoomID, Name: req.Name, Owner: req.Owner, GuestsCanSend: req.GuestsCanSend,
		HistorySize: req.HistorySize, MsgRate: req.MsgRate, MemberRate: req.MemberRate, Created: s.now()}
	if err := s.st.CreateRoom(ctx, r); err != nil {
		return nil, storeErr(err, "room")
	}
	s.roomMetrics.rooms.WithLabelValues("created").Inc()
	return roomInfo(&r, 0), nil
}

func roomInfo(r *store.Room, members int) *imapi.RoomInfo {
	return &imapi.RoomInfo{RoomID: r.RoomID, Name: r.Name, Owner: r.Owner, Muted: r.Muted, GuestsCanSend: r.GuestsCanSend,
		Members: members, LastSeq: r.LastSeq, Closed: r.Closed, Created: r.Created.UnixMilli()}
}

// roomSizeTTL is how long an enter may report a room size counted
// earlier: counting costs a scan of the room's presence, and a crowd
// entering at once would scan it once each.
const roomSizeTTL = 2 * time.Second

// roomSize is the room's session count, counted at most every roomSizeTTL.
func (s *Service) roomSize(ctx context.Context, appkey, roomID string) (int, error) {
	key := appkey + "/" + roomID
	now := s.now()
	s.rooms.mu.Lock()
	c, ok := s.rooms.sizes[key]
	s.rooms.mu.Unlock()
	if ok && now.Sub(c.at) < roomSizeTTL {
		return c.n, nil
	}
	gws, err := s.st.RoomGateways(ctx, appkey, roomID)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, c := range gws {
		n += c
	}
	s.rooms.mu.Lock()
	if len(s.rooms.sizes) >= maxLimiters {
		clear(s.rooms.sizes)
	}
	s.rooms.sizes[key] = roomCount{n: n, at: now}
	s.rooms.mu.Unlock()
	return n, nil
}

// RoomInfo describes a room (closed ones included) with its member count.
func (s *Service) RoomInfo(ctx context.Context, appkey, roomID string) (*imapi.RoomInfo, error) {
	r, err := s.st.Room(ctx, appkey, roomID)
	if err != nil {
		return nil, storeErr(err, "room")
	}
	gws, err := s.st.RoomGateways(ctx, appkey, roomID)
	if err != nil {
		return nil, storeErr(err, "room")
	}
	n := 0
	for _, c := range gws {
		n += c
	}
	return roomInfo(&r, n), nil
}

// CloseRoom closes a room: its members are told and removed, sends and
// entries fail from now on.
func (s *Service) CloseRoom(ctx context.Context, appkey, roomID, by string) error {
	if err := s.st.CloseRoom(ctx, appkey, roomID); err != nil {
		return storeErr(err, "room")
	}
	s.roomMetrics.rooms.WithLabelValues("closed").Inc()
	s.roomEvent(appkey, &imapi.RoomEvent{RoomID: roomID, Kind: imapi.RoomEventClosed, By: by})
	return nil
}

// RoomMembers pages through the accounts in a room.
func (s *Service) RoomMembers(ctx context.Context, appkey string, req *imapi.RoomMembersReq) (*imapi.RoomMembersResp, error) {
	if req.After != "" && !ValidName(req.After) {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "after: not an account")
	}
	rows, more, err := s.st.RoomMembers(ctx, appkey, req.RoomID, req.After, s.pageLimit(req.Limit))
	if err != nil {
		return nil, storeErr(err, "room")
	}
	out := &imapi.RoomMembersResp{Members: make([]imapi.RoomMember, len(rows))}
	now := s.now().UnixMilli()
	for i, r := range rows {
		role := r.Role
		if role == "" {
			role = imapi.RoleMember
		}
		m := imapi.RoomMember{Account: r.Account, Role: role}
		if r.MutedUntil > now {
			m.MutedUntil = r.MutedUntil
		}
		out.Members[i] = m
	}
	if more && len(rows) > 0 {
		out.Next = rows[len(rows)-1].Account
	}
	return out, nil
}

// RoomEntryPoints returns the gateways a client should enter roomID
// through, best first: those already holding most of the room's members
// (so that the room stays on few gateways and each room message costs few
// copies), then the least loaded live gateways while the first ones are
// full or draining.
func (s *Service) RoomEntryPoints(ctx context.Context, appkey, roomID string) ([]RoomEntryPoint, error) {
	r, err := s.st.Room(ctx, appkey, roomID)
	if err != nil {
		return nil, storeErr(err, "room")
	}
	if r.Closed {
		return nil, imapi.Errorf(imapi.ErrNotFound, "room closed")
	}
	held, err := s.st.RoomGateways(ctx, appkey, roomID)
	if err != nil {
		return nil, storeErr(err, "room")
	}
	now := s.now()
	s.rooms.mu.Lock()
	var live []gatewaySeen
	for _, g := range s.rooms.gateways {
		if now.Sub(g.at) > s.cfg.Rooms.GatewayTimeout.D() {
			continue
		}
		if g.Draining || len(g.Addresses) == 0 || (g.Capacity > 0 && g.Sessions >= g.Capacity) {
			continue
		}
		live = append(live, g)
	}
	s.rooms.mu.Unlock()
	sort.Slice(live, func(i, j int) bool {
		a, b := live[i], live[j]
		if held[a.ID] != held[b.ID] {
			return held[a.ID] > held[b.ID]
		}
		fa, fb := free(a.GatewayAnnounce), free(b.GatewayAnnounce)
		if fa != fb {
			return fa > fb
		}
		return a.ID < b.ID
	})
	if len(live) == 0 {
		return nil, imapi.Errorf(imapi.ErrUnavailable, "no gateway is available")
	}
	out := make([]RoomEntryPoint, 0, s.cfg.Rooms.MaxEntryPoints)
	for _, g := range live[:min(len(live), s.cfg.Rooms.MaxEntryPoints)] {
		out = append(out, RoomEntryPoint{Gateway: g.ID, Addresses: g.Addresses, Members: held[g.ID]})
	}
	return out, nil
}

func free(a imapi.GatewayAnnounce) int {
	if a.Capacity <= 0 {
		return math.MaxInt32 - a.Sessions
	}
	return a.Capacity - a.Sessions
}

// --- client ops ---

// roleRank orders roles for management: an actor manages accounts of a
// lower rank only, and needs at least a manager's.
func roleRank(role string) int {
	switch role {
	case imapi.RoleOwner:
		return 3
	case imapi.RoleManager:
		return 2
	case imapi.RoleMember:
		return 1
	}
	return 0
}

// roomAccount returns the stored state of an account, or a fresh one with
// the default role.
func (s *Service) roomAccount(ctx context.Context, appkey, roomID, account, role string) (store.RoomAccount, error) {
	a, err := s.st.RoomAccount(ctx, appkey, roomID, account)
	if errors.Is(err, store.ErrNotFound) {
		return store.RoomAccount{AppKey: appkey, RoomID: roomID, Account: account, Role: role}, nil
	}
	return a, err
}

// liveRoom loads a room that is not closed.
func (s *Service) liveRoom(ctx context.Context, appkey, roomID string) (store.Room, error) {
	if !ValidName(roomID) {
		return store.Room{}, imapi.Errorf(imapi.ErrBadRequest, "room_id: want 1-64 of A-Z a-z 0-9 _ -")
	}
	r, err := s.st.Room(ctx, appkey, roomID)
	if err != nil {
		return store.Room{}, storeErr(err, "room")
	}
	if r.Closed {
		return store.Room{}, imapi.Errorf(imapi.ErrNotFound, "room closed")
	}
	return r, nil
}

// inRoom fails unless the session has entered the room.
func (s *Service) inRoom(ctx context.Context, sess *imapi.Session, roomID string) error {
	if !ValidName(roomID) {
		return imapi.Errorf(imapi.ErrBadRequest, "room_id: want 1-64 of A-Z a-z 0-9 _ -")
	}
	in, err := s.st.InRoom(ctx, sess.AppKey, roomID, sess.SessionID)
	if err != nil {
		return storeErr(err, "room")
	}
	if !in {
		return imapi.Errorf(imapi.ErrForbidden, "not in room %s", roomID)
	}
	return nil
}

func (s *Service) roomEnter(ctx context.Context, sess *imapi.Session, body []byte) (any, error) {
	var req imapi.RoomEnterReq
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	res := "ok"
	defer func() { s.roomMetrics.enters.WithLabelValues(res).Inc() }()
	if sess.Gateway == "" || sess.SessionID == "" {
		res = "bad_request"
		return nil, imapi.Errorf(imapi.ErrBadRequest, "rooms are entered through a gateway")
	}
	r, err := s.liveRoom(ctx, sess.AppKey, req.RoomID)
	if err != nil {
		res = "not_found"
		return nil, err
	}
	app, err := s.apps.get(ctx, sess.AppKey, s.now())
	if err != nil {
		res = "error"
		return nil, storeErr(err, "app")
	}
	role, ok := "", false
	if len(req.Token) <= 512 {
		role, ok = verifyRoomToken(app.Secret, req.Token, sess.AppKey, req.RoomID, sess.Account, s.now())
	}
	if !ok {
		res = "bad_token"
		return nil, imapi.Errorf(imapi.ErrUnauthorized, "bad or expired room token")
	}
	acct, err := s.st.RoomAccount(ctx, sess.AppKey, r.RoomID, sess.Account)
	if errors.Is(err, store.ErrNotFound) {
		// No stored role: the token's. A guest's is stored so that its sends
		// are checked (a member needs no row).
		acct, err = store.RoomAccount{AppKey: sess.AppKey, RoomID: r.RoomID, Account: sess.Account, Role: role}, nil
		if role == imapi.RoleGuest {
			err = s.st.PutRoomAccount(ctx, acct)
		}
	}
	if err != nil {
		res = "error"
		return nil, storeErr(err, "room")
	}
	if acct.BannedUntil > s.now().UnixMilli() {
		res = "banned"
		return nil, imapi.Errorf(imapi.ErrForbidden, "banned from room %s", r.RoomID)
	}
	if err := s.st.EnterRoom(ctx, store.RoomPresence{AppKey: sess.AppKey, RoomID: r.RoomID, SessionID: sess.SessionID,
		Account: sess.Account, Gateway: sess.Gateway, Entered: s.now()}); err != nil {
		res = "not_found"
		return nil, storeErr(err, "room")
	}
	n := s.cfg.Rooms.EnterHistory
	if req.History > 0 {
		n = req.History
	}
	hist, err := s.st.RoomHistory(ctx, sess.AppKey, r.RoomID, min(n, r.HistorySize))
	if err != nil {
		res = "error"
		return nil, storeErr(err, "room")
	}
	members, err := s.roomSize(ctx, sess.AppKey, r.RoomID)
	if err != nil {
		res = "error"
		return nil, storeErr(err, "room")
	}
	out := &imapi.RoomEnterResp{Room: *roomInfo(&r, members), Role: acct.Role, History: make([]imapi.RoomMessage, len(hist))}
	for i := range hist {
		out.History[i] = roomMsgAPI(&hist[i])
	}
	return out, nil
}

func roomMsgAPI(m *store.RoomMessage) imapi.RoomMessage {
	return imapi.RoomMessage{RoomID: m.RoomID, MsgID: m.MsgID, Seq: m.Seq, From: m.Sender, ClientMsgID: m.ClientMsgID,
		Type: m.Type, Body: m.Body, Time: m.Time}
}

// roomLeave removes the session from a room. Gateways also send it, without
// a reply subject, for every room of a session that ends.
func (s *Service) roomLeave(ctx context.Context, sess *imapi.Session, body []byte) (any, error) {
	var req imapi.RoomRef
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	if !ValidName(req.RoomID) {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "room_id: want 1-64 of A-Z a-z 0-9 _ -")
	}
	if _, err := s.st.LeaveRoom(ctx, sess.AppKey, req.RoomID, sess.SessionID); err != nil {
		return nil, storeErr(err, "room")
	}
	return nil, nil
}

func (s *Service) roomSend(ctx context.Context, sess *imapi.Session, body []byte) (any, error) {
	var req imapi.RoomSendReq
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	return s.RoomSend(ctx, sess, &req)
}

// RoomSend stores a message in the room's recent history and publishes it
// once on the room subject. The server API sends as SystemAccount, which
// needs no presence and no role.
func (s *Service) RoomSend(ctx context.Context, sess *imapi.Session, req *imapi.RoomSendReq) (*imapi.RoomSendAck, error) {
	if req.ClientMsgID == "" || len(req.ClientMsgID) > 64 {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "client_msg_id: 1-64 bytes required")
	}
	if req.Type == "" {
		req.Type = "text"
	}
	if len(req.Type) > 32 {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "type: at most 32 bytes")
	}
	if len(req.Body) == 0 || string(req.Body) == "null" {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "body: required")
	}
	if len(req.Body) > s.cfg.MaxMessageBytes {
		s.metrics.oversize.Inc()
		return nil, imapi.Errorf(imapi.ErrTooLarge, "body of %d bytes exceeds %d", len(req.Body), s.cfg.MaxMessageBytes)
	}
	if !json.Valid(req.Body) {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "body: not JSON")
	}
	r, err := s.liveRoom(ctx, sess.AppKey, req.RoomID)
	if err != nil {
		return nil, err
	}
	now := s.now()
	if sess.Account != SystemAccount {
		if err := s.inRoom(ctx, sess, r.RoomID); err != nil {
			return nil, err
		}
		a, err := s.roomAccount(ctx, sess.AppKey, r.RoomID, sess.Account, imapi.RoleMember)
		if err != nil {
			return nil, storeErr(err, "room")
		}
		switch {
		case a.Role == imapi.RoleGuest && !r.GuestsCanSend:
			s.roomMetrics.refused.WithLabelValues("guest").Inc()
			return nil, imapi.Errorf(imapi.ErrForbidden, "guests may not send in this room")
		case r.Muted && roleRank(a.Role) < roleRank(imapi.RoleManager):
			s.roomMetrics.refused.WithLabelValues("room_muted").Inc()
			return nil, imapi.Errorf(imapi.ErrForbidden, "the room is muted")
		case a.MutedUntil > now.UnixMilli():
			s.roomMetrics.refused.WithLabelValues("muted").Inc()
			return nil, imapi.Errorf(imapi.ErrForbidden, "muted in this room")
		}
		mr := r.MemberRate
		if mr == 0 {
			mr = s.cfg.Rooms.MemberRate
		}
		if !s.allow(sess.AppKey+"/"+r.RoomID+"/"+sess.Account, mr) {
			s.roomMetrics.rateLimited.WithLabelValues("member").Inc()
			return nil, imapi.Errorf(imapi.ErrRateLimited, "member message rate in this room")
		}
	}
	rr := r.MsgRate
	if rr == 0 {
		rr = s.cfg.Rooms.MsgRate
	}
	if !s.allow(sess.AppKey+"/"+r.RoomID, rr) {
		s.roomMetrics.rateLimited.WithLabelValues("room").Inc()
		return nil, imapi.Errorf(imapi.ErrRateLimited, "room message rate")
	}
	m := &store.RoomMessage{AppKey: sess.AppKey, RoomID: r.RoomID, MsgID: newID(now), Sender: sess.Account,
		ClientMsgID: req.ClientMsgID, Type: req.Type, Body: req.Body, Time: now.UnixMilli()}
	if err := s.st.AppendRoomMessage(ctx, m); err != nil {
		return nil, storeErr(err, "room")
	}
	b, err := json.Marshal(roomMsgAPI(m))
	if err != nil {
		return nil, fmt.Errorf("encode room message: %w", err)
	}
	if err := s.nc.Publish(imapi.RoomSubject(sess.AppKey, r.RoomID)+imapi.RoomMessageSuffix, b); err != nil {
		s.metrics.pushErrors.Inc()
		return nil, imapi.Errorf(imapi.ErrUnavailable, "publish: %v", err)
	}
	s.roomMetrics.messages.Inc()
	return &imapi.RoomSendAck{MsgID: m.MsgID, Seq: m.Seq, Time: m.Time}, nil
}

func (s *Service) roomMembers(ctx context.Context, sess *imapi.Session, body []byte) (any, error) {
	var req imapi.RoomMembersReq
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	if err := s.inRoom(ctx, sess, req.RoomID); err != nil {
		return nil, err
	}
	return s.RoomMembers(ctx, sess.AppKey, &req)
}

func (s *Service) roomHistory(ctx context.Context, sess *imapi.Session, body []byte) (any, error) {
	var req imapi.RoomHistoryReq
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	if err := s.inRoom(ctx, sess, req.RoomID); err != nil {
		return nil, err
	}
	r, err := s.liveRoom(ctx, sess.AppKey, req.RoomID)
	if err != nil {
		return nil, err
	}
	n := req.Limit
	if n <= 0 {
		n = s.cfg.Rooms.EnterHistory
	}
	hist, err := s.st.RoomHistory(ctx, sess.AppKey, r.RoomID, min(n, r.HistorySize))
	if err != nil {
		return nil, storeErr(err, "room")
	}
	out := &imapi.RoomHistoryResp{Messages: make([]imapi.RoomMessage, len(hist))}
	for i := range hist {
		out.Messages[i] = roomMsgAPI(&hist[i])
	}
	return out, nil
}

func (s *Service) roomInfo(ctx context.Context, sess *imapi.Session, body []byte) (any, error) {
	var req imapi.RoomRef
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	if err := s.inRoom(ctx, sess, req.RoomID); err != nil {
		return nil, err
	}
	return s.RoomInfo(ctx, sess.AppKey, req.RoomID)
}

// manage loads the room and the actor's and target's states and checks
// that the actor may manage the target.
func (s *Service) manage(ctx context.Context, sess *imapi.Session, roomID, target string) (store.Room, store.RoomAccount, store.RoomAccount, error) {
	var none store.RoomAccount
	r, err := s.liveRoom(ctx, sess.AppKey, roomID)
	if err != nil {
		return r, none, none, err
	}
	actor, err := s.roomAccount(ctx, sess.AppKey, roomID, sess.Account, imapi.RoleMember)
	if err != nil {
		return r, none, none, storeErr(err, "room")
	}
	if roleRank(actor.Role) < roleRank(imapi.RoleManager) {
		return r, none, none, imapi.Errorf(imapi.ErrForbidden, "only the owner and managers manage room %s", roomID)
	}
	if target == "" {
		return r, actor, none, nil
	}
	if !ValidName(target) {
		return r, none, none, imapi.Errorf(imapi.ErrBadRequest, "account: want 1-64 of A-Z a-z 0-9 _ -")
	}
	t, err := s.roomAccount(ctx, sess.AppKey, roomID, target, imapi.RoleMember)
	if err != nil {
		return r, none, none, storeErr(err, "room")
	}
	if roleRank(t.Role) >= roleRank(actor.Role) {
		return r, none, none, imapi.Errorf(imapi.ErrForbidden, "%s may not manage %s (%s)", actor.Role, target, t.Role)
	}
	return r, actor, t, nil
}

func (s *Service) roomSetRole(ctx context.Context, sess *imapi.Session, body []byte) (any, error) {
	var req imapi.RoomRoleReq
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	switch req.Role {
	case imapi.RoleManager, imapi.RoleMember, imapi.RoleGuest:
	default:
		return nil, imapi.Errorf(imapi.ErrBadRequest, "role: manager, member or guest")
	}
	_, actor, t, err := s.manage(ctx, sess, req.RoomID, req.Account)
	if err != nil {
		return nil, err
	}
	if actor.Role != imapi.RoleOwner {
		return nil, imapi.Errorf(imapi.ErrForbidden, "only the owner sets roles")
	}
	t.Role = req.Role
	if err := s.st.PutRoomAccount(ctx, t); err != nil {
		return nil, storeErr(err, "room")
	}
	s.roomEvent(sess.AppKey, &imapi.RoomEvent{RoomID: req.RoomID, Kind: imapi.RoomEventRole, Account: req.Account, Role: req.Role, By: sess.Account})
	return nil, nil
}

// forever is the "until unmuted" mute time (unix milliseconds).
const forever = int64(1) << 62

func (s *Service) roomMute(ctx context.Context, sess *imapi.Session, body []byte) (any, error) {
	var req imapi.RoomMuteReq
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	if req.DurationSec < 0 {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "duration_sec: must not be negative")
	}
	_, _, t, err := s.manage(ctx, sess, req.RoomID, req.Account)
	if err != nil {
		return nil, err
	}
	return nil, s.applyMute(ctx, sess.AppKey, &req, t, sess.Account)
}

// RoomMute is room.mute for the app's server (acting as by, usually
// SystemAccount): it may mute any account of a live room, the owner and
// managers included, or the whole room when req.Account is empty.
func (s *Service) RoomMute(ctx context.Context, appkey string, req *imapi.RoomMuteReq, by string) error {
	if req.DurationSec < 0 {
		return imapi.Errorf(imapi.ErrBadRequest, "duration_sec: must not be negative")
	}
	t, err := s.roomTarget(ctx, appkey, req.RoomID, req.Account)
	if err != nil {
		return err
	}
	return s.applyMute(ctx, appkey, req, t, by)
}

// roomTarget loads a live room's account for the app's server, which
// needs no role ("" account: none).
func (s *Service) roomTarget(ctx context.Context, appkey, roomID, account string) (store.RoomAccount, error) {
	if _, err := s.liveRoom(ctx, appkey, roomID); err != nil {
		return store.RoomAccount{}, err
	}
	if account == "" {
		return store.RoomAccount{}, nil
	}
	if !ValidName(account) {
		return store.RoomAccount{}, imapi.Errorf(imapi.ErrBadRequest, "account: want 1-64 of A-Z a-z 0-9 _ -")
	}
	t, err := s.roomAccount(ctx, appkey, roomID, account, imapi.RoleMember)
	if err != nil {
		return t, storeErr(err, "room")
	}
	return t, nil
}

func (s *Service) applyMute(ctx context.Context, appkey string, req *imapi.RoomMuteReq, t store.RoomAccount, by string) error {
	ev := &imapi.RoomEvent{RoomID: req.RoomID, By: by}
	if req.Account == "" {
		if err := s.st.SetRoomMuted(ctx, appkey, req.RoomID, req.Muted); err != nil {
			return storeErr(err, "room")
		}
		ev.Kind = imapi.RoomEventRoomUnmuted
		if req.Muted {
			ev.Kind = imapi.RoomEventRoomMuted
		}
	} else {
		t.MutedUntil, ev.Kind, ev.Account = 0, imapi.RoomEventUnmuted, req.Account
		if req.Muted {
			t.MutedUntil, ev.Kind = forever, imapi.RoomEventMuted
			if req.DurationSec > 0 {
				t.MutedUntil = s.now().Add(time.Duration(req.DurationSec) * time.Second).UnixMilli()
				ev.Until = t.MutedUntil
			}
		}
		if err := s.st.PutRoomAccount(ctx, t); err != nil {
			return storeErr(err, "room")
		}
	}
	s.roomEvent(appkey, ev)
	return nil
}

func (s *Service) roomKick(ctx context.Context, sess *imapi.Session, body []byte) (any, error) {
	var req imapi.RoomKickReq
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	if err := validKick(&req); err != nil {
		return nil, err
	}
	_, _, t, err := s.manage(ctx, sess, req.RoomID, req.Account)
	if err != nil {
		return nil, err
	}
	return nil, s.applyKick(ctx, sess.AppKey, &req, t, sess.Account)
}

// RoomKick is room.kick for the app's server (acting as by, usually
// SystemAccount): it may kick any account of a live room.
func (s *Service) RoomKick(ctx context.Context, appkey string, req *imapi.RoomKickReq, by string) error {
	if err := validKick(req); err != nil {
		return err
	}
	t, err := s.roomTarget(ctx, appkey, req.RoomID, req.Account)
	if err != nil {
		return err
	}
	return s.applyKick(ctx, appkey, req, t, by)
}

func validKick(req *imapi.RoomKickReq) error {
	if req.Account == "" || req.BanSec < 0 || len(req.Reason) > 256 {
		return imapi.Errorf(imapi.ErrBadRequest, "account required, ban_sec not negative, reason at most 256 bytes")
	}
	return nil
}

func (s *Service) applyKick(ctx context.Context, appkey string, req *imapi.RoomKickReq, t store.RoomAccount, by string) error {
	ev := &imapi.RoomEvent{RoomID: req.RoomID, Kind: imapi.RoomEventKicked, Account: req.Account, By: by, Reason: req.Reason}
	if req.BanSec > 0 {
		t.BannedUntil = s.now().Add(time.Duration(req.BanSec) * time.Second).UnixMilli()
		ev.Until = t.BannedUntil
		if err := s.st.PutRoomAccount(ctx, t); err != nil {
			return storeErr(err, "room")
		}
	}
	if _, err := s.st.RemoveRoomAccount(ctx, appkey, req.RoomID, req.Account); err != nil {
		return storeErr(err, "room")
	}
	s.roomMetrics.kicks.Inc()
	s.roomEvent(appkey, ev)
	return nil
}

func (s *Service) roomClose(ctx context.Context, sess *imapi.Session, body []byte) (any, error) {
	var req imapi.RoomRef
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	r, err := s.liveRoom(ctx, sess.AppKey, req.RoomID)
	if err != nil {
		return nil, err
	}
	if r.Owner != sess.Account {
		return nil, imapi.Errorf(imapi.ErrForbidden, "only the owner closes room %s", req.RoomID)
	}
	return nil, s.CloseRoom(ctx, sess.AppKey, req.RoomID, sess.Account)
}

// roomEvent publishes an event on the room's event subject: every gateway
// holding members delivers it to them (and acts on kicks and closes).
func (s *Service) roomEvent(appkey string, ev *imapi.RoomEvent) {
	b, _ := json.Marshal(ev)
	if err := s.nc.Publish(imapi.RoomSubject(appkey, ev.RoomID)+imapi.RoomEventSuffix, b); err != nil {
		s.metrics.pushErrors.Inc()
		s.log.Warn("room event not published", "room", ev.RoomID, "kind", ev.Kind, "err", err)
		return
	}
	s.roomMetrics.events.WithLabelValues(ev.Kind).Inc()
}
