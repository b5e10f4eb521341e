// Package lbsapi is the LBS's HTTP contract with SDKs and with the nodes
// (edges, gateways) that register and report load. It has no sockets; the
// server is package lbs, the clients lbs/lbsclient and lbs/nodeclient.
//
// SDK query (client port, plain HTTP):
//
//	GET /v1/lbs?appkey=demo&env=prod&sdk=5.2.1&platform=ios[&ts=…&sig=…]
//
// After a connect the SDK may report what it measured (real-user
// monitoring), same port:
//
//	POST /v1/rum?appkey=demo[&ts=…&sig=…]   body Report → 204
//
// sig = hex(HMAC-SHA256(secret, ReportSigningString(appkey, ts, body))).
//
// The answer is an Answer. ts and sig are required when the app has a signing
// secret: sig = hex(HMAC-SHA256(secret, SigningString(appkey, env, sdk, platform, ts))),
// ts in Unix seconds within ±5 minutes of the server's clock.
//
// Node calls (admin port, HTTPS, "Authorization: Bearer <node token>"):
//
//	POST /v1/nodes/heartbeat   body Heartbeat → HeartbeatReply
//	POST /v1/nodes/drain       body Heartbeat (Node set) → HeartbeatReply
//	GET  /v1/turn-secrets      → []TurnSecret (node or operator token)
package lbsapi

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// Paths.
const (
	PathQuery       = "/v1/lbs"
	PathResolve     = "/resolve"
	PathHeartbeat   = "/v1/nodes/heartbeat"
	PathNodeDrain   = "/v1/nodes/drain"
	PathTurnSecrets = "/v1/turn-secrets"
	PathReport      = "/v1/rum"
)

// Report is what an SDK measured during one connect: every candidate it
// raced. The LBS pools reports by the reporter's address prefix (from the
// connection, never from the body) and entry point.
type Report struct {
	SDK      string    `json:"sdk,omitempty"`
	Platform string    `json:"platform,omitempty"`
	Attempts []Attempt `json:"attempts"`
}

// Attempt outcomes.
const (
	OutcomeWon    = "won"    // this attempt opened the session that was used
	OutcomeLost   = "lost"   // still going, or done later, when another won
	OutcomeFailed = "failed" // refused, timed out or broke
)

// Attempt transports.
const (
	TransportTCP  = "tcp"  // Link over TCP (the default)
	TransportQUIC = "quic" // Link over QUIC
	// TransportWebLink is Socket.IO (the Web SDK): its time includes the
	// Engine.IO handshake, so it is longer than a Link attempt's to the
	// same entry point. The LBS pools every transport's samples per
	// (prefix, entry point); a connect reports every candidate it raced
	// with one transport, so the entry points a prefix compares get the
	// same mix.
	TransportWebLink = "weblink"
)

// Attempt is one raced candidate.
type Attempt struct {
	ID string `json:"id"` // entry point id, from the answer
	// Transport is TransportTCP (when empty), TransportQUIC or
	// TransportWebLink.
	Transport string `json:"transport,omitempty"`
	// Ms is the time from the attempt's start to an open Link session
	// (connection and handshake; for WebLink the Socket.IO connection),
	// or, for an attempt that lost, to when it ended or another won (a
	// lower bound).
	Ms      int    `json:"ms"`
	Outcome string `json:"outcome"`
}

// Limits of a report the LBS accepts.
const (
	MaxReportBytes    = 4096
	MaxReportAttempts = 8
	MaxAttemptMs      = 120000
)

// ReportSigningString is what a signed report's HMAC covers: the appkey,
// the time and the body's SHA-256.
func ReportSigningString(appkey, ts string, body []byte) string {
	h := sha256.Sum256(body)
	return strings.Join([]string{"rum", appkey, ts, hex.EncodeToString(h[:])}, "\n")
}

// SignReport computes a report's sig parameter.
func SignReport(secret, appkey, ts string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ReportSigningString(appkey, ts, body)))
	return hex.EncodeToString(m.Sum(nil))
}

// Answer lists entry points per protocol, best first. The app's fallback, if
// any, is last and marked.
type Answer struct {
	AppKey        string     `json:"appkey"`
	Rule          string     `json:"rule"`
	PolicyVersion uint64     `json:"policy_version"`
	RaftIndex     uint64     `json:"raft_index"`
	StalenessMs   int64      `json:"staleness_ms"` // -1: this LBS node never heard from a leader
	TTL           int        `json:"ttl"`          // seconds
	ClientIP      string     `json:"client_ip"`
	Country       string     `json:"country,omitempty"`
	Link          []Endpoint `json:"link"`
	// LinkQUIC are the entry points' Link over QUIC addresses (UDP), in
	// the order of Link; an SDK races each before the same entry point's
	// Link (TCP) address. Absent when none has one.
	LinkQUIC []Endpoint `json:"link_quic,omitempty"`
	WebLink  []Endpoint `json:"weblink"`
	TURN     []Endpoint `json:"turn"`
	// Source is set by lbsclient, not the server: "lbs", "cache" or "default".
	Source string `json:"source,omitempty"`
}

// Endpoint is one entry point's address for one protocol.
type Endpoint struct {
	ID       string   `json:"id"`
	Site     string   `json:"site"`
	Host     string   `json:"host,omitempty"`
	Port     int      `json:"port,omitempty"`
	URL      string   `json:"url,omitempty"` // WebLink
	Weight   int      `json:"weight"`
	KeyIDs   []string `json:"key_ids,omitempty"`
	Fallback bool     `json:"fallback,omitempty"`
}

// Error is the body of every non-2xx answer.
type Error struct {
	Error string `json:"error"`
}

// Heartbeat is a node's periodic report.
type Heartbeat struct {
	Node        string  `json:"node"`        // entry point id
	Connections int     `json:"connections"` // current sessions
	CPU         float64 `json:"cpu"`         // 0..1
	Capacity    int     `json:"capacity"`    // sessions it accepts; 0: use the policy's
	// ConnRate is the client connections per second the node accepted
	// since its last beat (an attack signal: the policy's rotation rule).
	ConnRate float64 `json:"conn_rate,omitempty"`
	Draining bool    `json:"draining,omitempty"`
	// Gateways also report how they route requests: their appkey →
	// dedicated cluster map and the service nodes they hear announced on
	// the bus, so that explain can say which nodes serve an account.
	Clusters     map[string]string `json:"clusters,omitempty"`
	ServiceNodes []ServiceNode     `json:"service_nodes,omitempty"`
	// Version is the node's software version, shown to operators (and the
	// key of grayscale by node version).
	Version string `json:"version,omitempty"`
	// Labels are the node's own labels (site, zone, version label …) as
	// configured on the node; the console shows them beside the policy's.
	Labels map[string]string `json:"labels,omitempty"`
	// Paths are the node's next hops over the backbone with their measured
	// quality (edges and relays).
	Paths []Path `json:"paths,omitempty"`
}

// ServiceNode is a live app service node as a gateway hears of it.
type ServiceNode struct {
	ID      string `json:"id"`
	Cluster string `json:"cluster"`
	Version string `json:"version"`
	// Site is the data centre the node runs in ("" when not labelled).
	Site string `json:"site,omitempty"`
	// Canary: the node takes only requests a grayscale rule sends to its
	// version.
	Canary   bool `json:"canary,omitempty"`
	Draining bool `json:"draining,omitempty"`
}

// Path is one next hop's measured quality.
type Path struct {
	To     string  `json:"to"` // the next hop's name (topology id or address)
	Up     bool    `json:"up"`
	RTTMs  float64 `json:"rtt_ms"`
	Loss   float64 `json:"loss"` // 0..1
	Jitter float64 `json:"jitter_ms,omitempty"`
}

// HeartbeatReply tells the node how often to report.
type HeartbeatReply struct {
	IntervalMs int64  `json:"interval_ms"`
	State      string `json:"state"` // committed health: up, down, overloaded, draining, "" (unknown)
	LBSNode    string `json:"lbs_node"`
	// Drained: an operator drained this entry point (ctl drain, ctl site
	// drain): it is out of answers, and a gateway moves its sessions
	// elsewhere over its operator_drain_time. A node's own drain (on
	// shutdown) does not set it.
	Drained bool `json:"drained,omitempty"`
	// Uplinks is the reporting edge's relay topology resolved to tunnel
	// addresses; absent when the policy has no topology entry for it.
	Uplinks *Uplinks `json:"uplinks,omitempty"`
	// Grayscale is the policy's grayscale rules (grayscale.go), always
	// present (an empty list is the rollback of every rule).
	Grayscale *Grayscale `json:"grayscale,omitempty"`
}

// Uplinks are an edge's next hops from the policy's topology, in order of
// preference: relays to send flows through, and core egresses as the
// direct path.
type Uplinks struct {
	Relays []Tunnel `json:"relays,omitempty"`
	Cores  []Tunnel `json:"cores,omitempty"`
}

// Tunnel is one relay's or egress's tunnel listeners (host:port), by
// transport; at least one is set.
type Tunnel struct {
	ID string `json:"id"`
	// Site is the entry point's site: an edge prefers the core egresses of
	// its home site.
	Site string `json:"site,omitempty"`
	QUIC string `json:"quic,omitempty"`
	KCP  string `json:"kcp,omitempty"`
}

// TurnSecret is a TURN REST shared secret.
type TurnSecret struct {
	ID     string `json:"id"`
	Secret string `json:"secret"`
}

// SigningString is what a signed SDK query's HMAC covers.
func SigningString(appkey, env, sdk, platform, ts string) string {
	return strings.Join([]string{appkey, env, sdk, platform, ts}, "\n")
}

// Sign computes the sig parameter.
func Sign(secret, appkey, env, sdk, platform, ts string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(SigningString(appkey, env, sdk, platform, ts)))
	return hex.EncodeToString(m.Sum(nil))
}
