package sdk

// Calls: TURN credentials with the nearest TURN servers, and 1:1 call
// signalling (imapi.OpCallSignal), answered by the core's call service
// (core/callsvc). Incoming signals arrive on Events() as EventPush with
// Op imapi.OpCallEvent; CallEventOf decodes them.
//
//	creds, _ := c.TurnCredentials(ctx, 0)            // for pion/turn or WebRTC
//	id := sdk.NewCallID()
//	_ = c.CallInvite(ctx, "bob", id, "audio", offer)
//	for ev := range c.Events() {
//		if ce, ok := sdk.CallEventOf(ev); ok && ce.Kind == imapi.CallAccept { … }
//	}

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/longlink/longlink/core/imapi"
)

// TurnCredentials asks the core for TURN credentials valid for ttl (0: the
// server's default) and the TURN servers nearest to this client, nearest
// first.
func (c *Client) TurnCredentials(ctx context.Context, ttl time.Duration) (imapi.TurnCredentials, error) {
	var out imapi.TurnCredentials
	err := c.Request(ctx, imapi.OpTurnCredentials, imapi.TurnCredentialsReq{TTLSec: int(ttl / time.Second)}, &out)
	return out, err
}

// CallSignal sends one signalling step to the other party of a call.
func (c *Client) CallSignal(ctx context.Context, sig imapi.CallSignal) error {
	return c.Request(ctx, imapi.OpCallSignal, sig, nil)
}

// CallInvite starts a call: offer is the session description (opaque to
// the server), media "audio" or "video".
func (c *Client) CallInvite(ctx context.Context, to, callID, media string, offer json.RawMessage) error {
	return c.CallSignal(ctx, imapi.CallSignal{CallID: callID, To: to, Kind: imapi.CallInvite, Media: media, Payload: offer})
}

// CallRinging tells the caller that this device is alerting.
func (c *Client) CallRinging(ctx context.Context, to, callID string) error {
	return c.CallSignal(ctx, imapi.CallSignal{CallID: callID, To: to, Kind: imapi.CallRinging})
}

// CallAccept answers a call with answer (the session description).
func (c *Client) CallAccept(ctx context.Context, to, callID string, answer json.RawMessage) error {
	return c.CallSignal(ctx, imapi.CallSignal{CallID: callID, To: to, Kind: imapi.CallAccept, Payload: answer})
}

// CallReject declines a call; reason may be empty.
func (c *Client) CallReject(ctx context.Context, to, callID, reason string) error {
	var p json.RawMessage
	if reason != "" {
		p, _ = json.Marshal(reason)
	}
	return c.CallSignal(ctx, imapi.CallSignal{CallID: callID, To: to, Kind: imapi.CallReject, Payload: p})
}

// CallHangup ends a call.
func (c *Client) CallHangup(ctx context.Context, to, callID string) error {
	return c.CallSignal(ctx, imapi.CallSignal{CallID: callID, To: to, Kind: imapi.CallHangup})
}

// CallCandidate sends one ICE candidate.
func (c *Client) CallCandidate(ctx context.Context, to, callID string, candidate json.RawMessage) error {
	return c.CallSignal(ctx, imapi.CallSignal{CallID: callID, To: to, Kind: imapi.CallCandidate, Payload: candidate})
}

// CallEventOf decodes a call signal from an event of Events().
func CallEventOf(ev Event) (imapi.CallEvent, bool) {
	if ev.Kind != EventPush || ev.Op != imapi.OpCallEvent {
		return imapi.CallEvent{}, false
	}
	var ce imapi.CallEvent
	if err := json.Unmarshal(ev.Body, &ce); err != nil || ce.CallID == "" {
		return imapi.CallEvent{}, false
	}
	return ce, true
}

// NewCallID returns a random call id.
func NewCallID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// TurnURI is a parsed TURN URI (RFC 7065).
type TurnURI struct {
	Secure    bool   // turns: (TLS)
	Addr      string // host:port
	Transport string // "udp" or "tcp"
}

// ParseTurnURI parses "turn:host[:port][?transport=udp|tcp]" and
// "turns:…", filling in the default ports (3478, 5349) and transports
// (udp for turn:, tcp for turns:).
func ParseTurnURI(s string) (TurnURI, error) {
	u, err := url.Parse(s)
	if err != nil {
		return TurnURI{}, fmt.Errorf("sdk: turn uri: %w", err)
	}
	var t TurnURI
	switch u.Scheme {
	case "turn":
		t.Transport = "udp"
	case "turns":
		t.Secure, t.Transport = true, "tcp"
	default:
		return TurnURI{}, fmt.Errorf("sdk: turn uri %q: scheme is not turn or turns", s)
	}
	hostport := u.Opaque
	if hostport == "" {
		return TurnURI{}, fmt.Errorf("sdk: turn uri %q: no host", s)
	}
	if tr := u.Query().Get("transport"); tr != "" {
		if tr != "udp" && tr != "tcp" {
			return TurnURI{}, fmt.Errorf("sdk: turn uri %q: transport %q", s, tr)
		}
		t.Transport = tr
	}
	if _, _, err := net.SplitHostPort(hostport); err != nil {
		port := "3478"
		if t.Secure {
			port = "5349"
		}
		hostport = net.JoinHostPort(strings.Trim(hostport, "[]"), port)
	}
	t.Addr = hostport
	return t, nil
}
