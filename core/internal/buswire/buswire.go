// Package buswire is the internal contract between the gateways, the
// server API and the app services on the NATS bus: the envelopes a
// request, its reply and a push travel in, their JSON codecs, the
// gateway-only send batch, the gateways' announcements and the subject
// names. Clients never see any of it: their contract is core/imapi, whose
// bodies these envelopes carry as they are.
//
// Requests: a gateway publishes a Request to ServiceSubject(cluster, op) as
// a NATS request; app services subscribe with the queue group ServiceQueue
// so that each request reaches one live service node. The reply is a
// Reply.
//
// Pushes: services publish a Push to UserSubject(appkey, account); every
// gateway subscribes to the subjects of the accounts it holds, so a push
// reaches exactly the gateways that need it. Rooms and super-groups have a
// subject each (RoomSubject, SuperSubject) that gateways holding their
// members subscribe to, so one publish reaches each such gateway once and
// the gateway fans out locally.
package buswire

import (
	"encoding/json"

	"github.com/longlink/longlink/core/imapi"
)

// Session identifies the logged-in session that sent a request.
type Session struct {
	AppKey     string `json:"appkey"`
	Account    string `json:"account"`
	DeviceID   string `json:"device_id"`
	DeviceType string `json:"device_type"`
	SessionID  string `json:"session_id"`
	Gateway    string `json:"gateway"`   // id of the gateway holding the session
	ClientIP   string `json:"client_ip"` // the real client address (after PROXY v2)
	SDK        string `json:"sdk,omitempty"`
}

// Request is what a gateway sends to a service. For imapi.OpLogin, Session
// holds only what the gateway knows before authentication (gateway, client
// IP).
type Request struct {
	Session Session `json:"session"`
	// Sent is when the gateway sent the request (unix milliseconds, its
	// clock), on send batches: a service node that finds it older than
	// its max_request_age (it was paused, or its queue stalled) drops it
	// unanswered — the gateway has resent it, or given the session up.
	Sent int64           `json:"sent,omitempty"`
	Body json.RawMessage `json:"body,omitempty"`
}

// Reply is a service's answer: Code 0 with Body, or an error code.
type Reply struct {
	Code    imapi.Code      `json:"code"`
	Message string          `json:"message,omitempty"`
	Body    json.RawMessage `json:"body,omitempty"`
}

// Push is delivered to all sessions of an account, except ExceptSession
// (the sender's own session does not need a copy of its own message; its
// other devices do).
type Push struct {
	Op            imapi.Op        `json:"op"`
	Body          json.RawMessage `json:"body"`
	ExceptSession string          `json:"except_session,omitempty"`
	// OnlySession, when set, limits the push to one session (used for kicks).
	OnlySession string `json:"only_session,omitempty"`
	// KickDeviceType, when set on an imapi.OpKick push, asks gateways to
	// close the account's sessions of that device type other than
	// ExceptSession; the value "*" means every other session.
	KickDeviceType string `json:"kick_device_type,omitempty"`
}

// GatewayAnnounce is one gateway's periodic announcement on
// GatewaySubject.
type GatewayAnnounce struct {
	ID        string   `json:"id"`
	Addresses []string `json:"addresses"` // entry addresses for clients
	Sessions  int      `json:"sessions"`
	Capacity  int      `json:"capacity"` // max sessions (0: unknown)
	Draining  bool     `json:"draining,omitempty"`
	EveryMS   int64    `json:"every_ms"` // the announcement interval
	// Started is when this gateway instance started (unix milliseconds): a
	// new value under a known id means a restart, whose old sessions are
	// gone.
	Started int64 `json:"started"`
}

// LoginReply is the body of the login service's answer to a gateway: the
// client's imapi.LoginResp and, for the gateway only, the account's
// super-groups, whose subjects it subscribes to (it answers the client
// with LoginResp alone).
type LoginReply struct {
	imapi.LoginResp
	SuperGroups []string `json:"super_groups,omitempty"`
}
