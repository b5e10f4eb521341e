package imapi

import "encoding/json"

// A/V calls (SvcCall): time-limited TURN credentials with the TURN servers
// nearest to the client, and 1:1 call signalling. Signals are pushed to the
// callee's sessions as they happen and are not stored: a callee that is
// offline misses the invite (the caller sees no "ringing" and gives up).
var (
	OpTurnCredentials = Op{SvcCall, 1} // TurnCredentialsReq → TurnCredentials
	OpCallSignal      = Op{SvcCall, 2} // CallSignal → CallSignalAck; the peer gets OpCallEvent
	OpCallEvent       = Op{SvcCall, 3} // push: CallEvent
)

func init() {
	Register(OpTurnCredentials, "call.turn")
	Register(OpCallSignal, "call.signal")
	Register(OpCallEvent, "call.event")
}

// Call signal kinds, in the order of a call's life.
const (
	CallInvite    = "invite"    // caller → callee: offer (SDP in Payload), Media
	CallRinging   = "ringing"   // callee → caller: a device is alerting
	CallAccept    = "accept"    // callee → caller: answer (SDP in Payload)
	CallReject    = "reject"    // callee → caller: declined or busy (reason in Payload)
	CallHangup    = "hangup"    // either side: the call ends
	CallCandidate = "candidate" // either side: one ICE candidate (in Payload)
)

// TurnCredentialsReq asks for TURN credentials. TTLSec 0 means the server's
// default; the server caps it.
type TurnCredentialsReq struct {
	TTLSec int `json:"ttl_sec,omitempty"`
}

// TurnCredentials are REST-style long-term credentials (username
// "expiry:appkey:account", password HMAC of it) valid on every server
// listed until Expires, and the servers nearest to the client first. The
// shape maps directly onto WebRTC's RTCIceServer.
type TurnCredentials struct {
	Username string       `json:"username"`
	Password string       `json:"password"`
	Expires  int64        `json:"expires"` // unix seconds
	TTLSec   int          `json:"ttl_sec"`
	Servers  []TurnServer `json:"servers"`
}

// TurnServer is one TURN server (site) and its URIs (RFC 7065), e.g.
// "turn:203.0.113.5:3478?transport=udp", "turns:turn.example.com:5349?transport=tcp".
type TurnServer struct {
	URLs []string `json:"urls"`
	Site string   `json:"site,omitempty"`
}

// CallSignal is one signalling step sent by a client to the other party of
// a call.
type CallSignal struct {
	CallID  string          `json:"call_id"` // chosen by the caller, unique
	To      string          `json:"to"`      // the other party's account
	Kind    string          `json:"kind"`    // CallInvite …
	Media   string          `json:"media,omitempty"`
	Payload json.RawMessage `json:"payload,omitempty"` // SDP, ICE candidate or reason (opaque to the server)
}

// CallSignalAck confirms that a signal was handed to the bus.
type CallSignalAck struct {
	Time int64 `json:"time"` // unix milliseconds, server clock
}

// CallEvent is a signal as pushed to the other party (and, for the answer
// kinds, to the sender's other devices so that they stop ringing).
type CallEvent struct {
	CallID     string          `json:"call_id"`
	Kind       string          `json:"kind"`
	From       string          `json:"from"`
	FromDevice string          `json:"from_device,omitempty"`
	To         string          `json:"to"`
	Media      string          `json:"media,omitempty"`
	Payload    json.RawMessage `json:"payload,omitempty"`
	Time       int64           `json:"time"`
}
