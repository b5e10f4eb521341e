package imapi

import (
	"encoding/json"
	"strings"
)

// The bus contract between gateways and app services (NATS).
//
// Requests: a gateway publishes a BusRequest to ServiceSubject(cluster, op) as
// a NATS request; app services subscribe with the queue group ServiceQueue so
// that each request reaches one live service node. The reply is a BusReply.
//
// Pushes: services publish a BusPush to UserSubject(appkey, account); every
// gateway subscribes to the subjects of the accounts it holds, so a push reaches
// exactly the gateways that need it.

// ServiceQueue is the NATS queue group of app service nodes.
const ServiceQueue = "svc"

// DefaultCluster is the subject prefix of the shared app service cluster.
// Dedicated clusters of large customers use their own name.
const DefaultCluster = "default"

// ServiceSubject is where requests for op go: "ll.<cluster>.svc.<service>.<command>".
func ServiceSubject(cluster string, op Op) string {
	return "ll." + cluster + ".svc." + strings.ReplaceAll(op.Name(), ".", "_")
}

// UserSubject carries pushes to every session of one account.
// Appkeys and accounts are validated to subject-safe characters at creation.
func UserSubject(appkey, account string) string {
	return "ll.user." + appkey + "." + account
}

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

// BusRequest is what a gateway sends to a service. For OpLogin, Session holds
// only what the gateway knows before authentication (gateway, client IP).
type BusRequest struct {
	Session Session `json:"session"`
	// Sent is when the gateway sent the request (unix milliseconds, its
	// clock), on send batches: a service node that finds it older than
	// its max_request_age (it was paused, or its queue stalled) drops it
	// unanswered — the gateway has resent it, or given the session up.
	Sent int64           `json:"sent,omitempty"`
	Body json.RawMessage `json:"body,omitempty"`
}

// BusReply is a service's answer: Code 0 with Body, or an error code.
type BusReply struct {
	Code    Code            `json:"code"`
	Message string          `json:"message,omitempty"`
	Body    json.RawMessage `json:"body,omitempty"`
}

// BusPush is delivered to all sessions of an account, except ExceptSession
// (the sender's own session does not need a copy of its own message; its
// other devices do).
type BusPush struct {
	Op            Op              `json:"op"`
	Body          json.RawMessage `json:"body"`
	ExceptSession string          `json:"except_session,omitempty"`
	// OnlySession, when set, limits the push to one session (used for kicks).
	OnlySession string `json:"only_session,omitempty"`
	// KickDeviceType, when set on an OpKick push, asks gateways to close the
	// account's sessions of that device type other than ExceptSession; the
	// value "*" means every other session.
	KickDeviceType string `json:"kick_device_type,omitempty"`
}
