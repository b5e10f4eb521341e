// Package sdk is the Go client SDK of Longlink IM: it connects to the IM
// core over Link (or another Transport), logs in, keeps the connection alive
// with heartbeats, reconnects with backoff and jitter, resends unacknowledged
// messages and syncs conversations so that the application sees every
// message once, in order per conversation.
//
//	c, err := sdk.New(cfg)
//	c.Start()
//	defer c.Close()
//	ack, err := c.SendText(ctx, imapi.ConvP2P, "bob", "hello")
//	for ev := range c.Events() { … }
package sdk

import (
	"github.com/longlink/longlink/lbs/lbsclient"

	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/link"
	"github.com/longlink/longlink/pkg/logging"
)

// Version is the SDK version sent at login unless Config.SDKVersion is set.
const Version = "go-1.0.0"

// Config configures a client. Zero values take the defaults noted.
type Config struct {
	// Addresses are candidate gateway addresses ("host:port", or
	// "quic://host:port" for Link over QUIC), raced in order.
	Addresses []string
	// Resolver, when set, is asked for fresh candidate addresses before each
	// connection attempt (the LBS client); Addresses are the fallback when it
	// fails or returns none.
	Resolver func(ctx context.Context) ([]string, error)
	// ServerKeys maps key ids to the gateways' static public keys (32 bytes).
	// Keys are tried newest id first (descending order); a server that does
	// not know a key id is retried with the next one.
	ServerKeys map[string][]byte

	AppKey     string
	Account    string
	Token      string
	DeviceID   string // default: account + "-" + DeviceType
	DeviceType string // phone, pad, pc, web…; default "pc"
	SDKVersion string // default Version
	Platform   string

	// Dialer opens a transport to an address. Default: Link over TCP with
	// ServerKeys.
	Dialer Dialer
	// Limits of the Link connection (default: link defaults).
	Limits link.Limits
	// Link tunes the default Link dialer's loss recovery: TCP connection
	// racing against SYN loss and request nudges (LinkOptions).
	Link LinkOptions

	// RaceDelay staggers the racing of candidate addresses. Default 250ms.
	RaceDelay time.Duration
	// QUICHeadStart is the stagger before a TCP candidate that follows a
	// Link over QUIC one ("quic://host:port"; LBSResolver lists an entry
	// point's QUIC address right before its TCP address): QUIC is
	// preferred (it recovers a lost packet within a round trip, where TCP
	// waits 200 ms or more), and where UDP is blocked TCP still connects
	// this soon after. Default 50ms.
	QUICHeadStart time.Duration
	// ConnectTimeout bounds one connection attempt (dial, handshake,
	// login). Default 10s.
	ConnectTimeout time.Duration
	// RequestTimeout bounds requests whose context has no deadline.
	// Default 15s.
	RequestTimeout time.Duration
	// BackoffMin and BackoffMax bound the reconnect backoff (exponential,
	// full jitter). Defaults 200ms and 30s.
	BackoffMin, BackoffMax time.Duration
	// SendWindow is the most durable sends (Send, SendAsync) a connection
	// has out unacknowledged: the ceiling of its congestion window, which
	// starts at SendWindowInitial, grows with each ack and halves at each
	// overload refusal (window.go). Default 64.
	SendWindow int
	// SendWindowInitial is the window of a new connection. Default 8.
	SendWindowInitial int
	// SendQueue is the most messages the client holds for their acks, out
	// or waiting for room in the window; SendAsync and Send refuse more
	// with ErrSendQueueFull. Default 1024.
	SendQueue int
	// GapWait is how long a pushed message that arrived ahead of a gap is
	// held back for the gap to fill before the conversation is synced.
	// Default 150ms.
	GapWait time.Duration
	// SyncPageSize is the page size of conversation and notice sync, at
	// most half of EventBuffer (a page must fit in what an application
	// that fell behind has read when the client fetches what it held
	// back). Default 200.
	SyncPageSize int
	// EventBuffer is the size of the Events channel: how many events may
	// wait for the application before it is behind and the client holds
	// back messages and notices and drops other events until it has read
	// half of them (Client.Events). Default 1024.
	EventBuffer int
	// LastSeqs are the last delivered sequences per conversation from a
	// previous run (see Client.LastSeqs); conversations not listed are
	// delivered from the start.
	LastSeqs map[string]int64
	// LastNoticeSeq is the last delivered notice seq from a previous run
	// (see Client.LastNoticeSeq); 0 delivers the notices the server keeps.
	LastNoticeSeq int64
	// RoomToken, when set, is asked for a fresh entry token when the one a
	// room was entered with is refused on re-entry after a reconnect
	// (expired); it usually asks the app's server. Without it such a room
	// is reported by an EventRoom with Err.
	RoomToken func(ctx context.Context, roomID string) (string, error)
	// RoomCatchUp is how many recent messages a re-entry after a reconnect
	// asks for (capped by the room's history size), to deliver those sent
	// while the client was away. Default 50.
	RoomCatchUp int
	// Reporter, when set, is given what each successful connect measured:
	// every candidate raced, its time and outcome (real-user monitoring;
	// LBSReporter(lc, …).Report posts it to the LBS). It is called in its
	// own goroutine.
	Reporter func(ConnectReport)
	// Logger; default discards.
	Logger *slog.Logger
}

func (c *Config) applyDefaults() {
	if c.DeviceType == "" {
		c.DeviceType = "pc"
	}
	if c.DeviceID == "" {
		c.DeviceID = c.Account + "-" + c.DeviceType
	}
	if c.SDKVersion == "" {
		c.SDKVersion = Version
	}
	if c.RaceDelay <= 0 {
		c.RaceDelay = 250 * time.Millisecond
	}
	if c.QUICHeadStart <= 0 {
		c.QUICHeadStart = 50 * time.Millisecond
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = 10 * time.Second
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = 15 * time.Second
	}
	if c.BackoffMin <= 0 {
		c.BackoffMin = 200 * time.Millisecond
	}
	if c.BackoffMax <= 0 {
		c.BackoffMax = 30 * time.Second
	}
	if c.SendWindow <= 0 {
		c.SendWindow = 64
	}
	if c.SendWindowInitial <= 0 {
		c.SendWindowInitial = 8
	}
	if c.SendQueue <= 0 {
		c.SendQueue = 1024
	}
	if c.GapWait <= 0 {
		c.GapWait = 150 * time.Millisecond
	}
	if c.SyncPageSize <= 0 {
		c.SyncPageSize = 200
	}
	if c.RoomCatchUp <= 0 {
		c.RoomCatchUp = 50
	}
	if c.EventBuffer <= 0 {
		c.EventBuffer = 1024
	}
	c.SyncPageSize = min(c.SyncPageSize, max(c.EventBuffer/2, 1))
	c.Logger = logging.OrDiscard(c.Logger)
}

// Validate reports configuration problems.
func (c *Config) Validate() error {
	var errs []error
	if len(c.Addresses) == 0 && c.Resolver == nil {
		errs = append(errs, errors.New("addresses or a resolver are required"))
	}
	if c.AppKey == "" || c.Account == "" || c.Token == "" {
		errs = append(errs, errors.New("appkey, account and token are required"))
	}
	if c.Dialer == nil {
		if len(c.ServerKeys) == 0 {
			errs = append(errs, errors.New("server keys are required for Link"))
		}
		for id, k := range c.ServerKeys {
			if err := link.ValidKeyID(id); err != nil {
				errs = append(errs, err)
			}
			if len(k) != 32 {
				errs = append(errs, fmt.Errorf("server key %q: %d bytes, want 32", id, len(k)))
			}
		}
	}
	if c.BackoffMax > 0 && c.BackoffMin > c.BackoffMax {
		errs = append(errs, errors.New("backoff min exceeds max"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sdk config: %w", err)
	}
	return nil
}

// Errors. Server result codes are returned as *imapi.Error (errors.As).
var (
	// ErrClosed: the client was closed.
	ErrClosed = errors.New("sdk: client closed")
	// ErrDisconnected: the connection carrying a request was lost before
	// its answer came. The request may or may not have been applied.
	ErrDisconnected = errors.New("sdk: disconnected")
	// ErrSendQueueFull: Config.SendQueue messages already wait for their
	// acks (the server is slower than the application sends); the message
	// was not queued. Send it again later.
	ErrSendQueueFull = errors.New("sdk: send queue full")
	// ErrKicked: another device took over the session; the client stopped.
	ErrKicked = errors.New("sdk: kicked by another device")
	// ErrAuth: the server refused the credentials; the client stopped.
	ErrAuth = errors.New("sdk: authentication failed")
	// ErrUnreachable: no candidate address took the connection (the LBS's
	// answer, its cached answer or the default link). It is the LBS client's
	// ErrNoEntryPointReachable. When the LBS could not be asked either, the
	// error also matches lbsclient.ErrLBSUnreachable.
	ErrUnreachable = lbsclient.ErrNoEntryPointReachable
)

// State is the connection state.
type State int

// States.
const (
	StateConnecting State = iota
	StateConnected
	StateDisconnected // lost; reconnecting after a backoff
	StateStopped      // closed, kicked or refused: no more reconnects
)

func (s State) String() string {
	switch s {
	case StateConnecting:
		return "connecting"
	case StateConnected:
		return "connected"
	case StateDisconnected:
		return "disconnected"
	case StateStopped:
		return "stopped"
	}
	return fmt.Sprintf("state(%d)", int(s))
}

// EventKind tells what an Event carries.
type EventKind int

// Event kinds.
const (
	EventMessage    EventKind = iota + 1 // Message: a new message (pushed or synced), in seq order per conversation
	EventReceipt                         // Receipt: the peer read a 1:1 conversation up to a seq
	EventRecalled                        // Recalled: a message was withdrawn
	EventGroup                           // Group: membership changed
	EventKicked                          // Kick: the server closed the session (another device, drain)
	EventState                           // State (and Err): connection state changed
	EventSent                            // Ack and ClientMsgID: a message of the outbox was acknowledged
	EventSendFailed                      // ClientMsgID and Err: the server refused a message for good
	EventPush                            // Op and Body: a push of an op the SDK does not know
	EventNotice                          // Notice: a relationship or profile change, in notice-stream order
	EventProfile                         // Profile: a friend's profile changed (online only)
	EventRoom                            // Room: a room entered again after a reconnect or after the app fell behind, or not (Room.Err)
	// EventRelationsReset (Relations): notices were missed for good (the
	// server keeps the newest 1000), or the server's stream is behind the
	// client's position (its data wiped or restored; LastNoticeSeq moves
	// back to the server's); replace the relationships derived from
	// notices with these, then apply the notices that follow.
	EventRelationsReset
	// EventDropped (Dropped): the application fell Config.EventBuffer
	// events behind, and that many events other than messages, notices and
	// room messages were dropped (see Client.Events). Those are not
	// dropped: they follow, fetched again from the server.
	EventDropped
)

// Event is something that happened, delivered on Client.Events.
type Event struct {
	Kind        EventKind
	Message     *imapi.Message
	Receipt     *imapi.Receipt
	Recalled    *imapi.Recalled
	Group       *imapi.GroupEvent
	Kick        *imapi.Kick
	State       State
	Ack         *imapi.SendAck
	ClientMsgID string
	Op          imapi.Op
	Body        []byte
	Err         error
	Notice      *imapi.Notice
	Profile     *imapi.Profile
	Room        *RoomRejoin
	Relations   *Relations
	Dropped     int
}
