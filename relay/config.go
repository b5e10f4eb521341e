package relay

import (
	"fmt"
	"time"

	"github.com/longlink/longlink/lbs/lbsapi"
	"github.com/longlink/longlink/lbs/nodeclient"
	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/relay/transport"
	"github.com/longlink/longlink/relay/wire"
)

// Hop is one next hop: a relay or a core egress.
type Hop struct {
	// Name labels the hop in metrics and logs. Default: the address.
	Name string `yaml:"name"`
	// Transport is "quic" or "kcp".
	Transport string `yaml:"transport"`
	// Address is the hop's tunnel listener, host:port.
	Address string `yaml:"address"`
	// Site is the data centre the hop runs in (a lower-case DNS label, as
	// the LBS policy's sites). A hop labelled with another site than
	// routing.home_site carries flows only while no hop of the home site
	// (or unlabelled) is up. Default "": unlabelled.
	Site string `yaml:"site"`
}

func (h Hop) key() string { return h.Transport + "|" + h.Address }

func (h Hop) label() string {
	if h.Name != "" {
		return h.Name
	}
	return h.Address
}

// Route says how to reach one destination cluster.
type Route struct {
	// Cluster is the destination cluster ("*" matches any cluster without its own route).
	Cluster string `yaml:"cluster"`
	// NextHops are probed continuously; the best one carries new flows and
	// the second best is kept warm as the backup.
	NextHops []Hop `yaml:"next_hops"`
	// Direct is the cluster's egress itself, used only while every next hop
	// is down. Optional.
	Direct *Hop `yaml:"direct"`
	// Directs are more egresses of the cluster (other core sites), used
	// like Direct, after it: the first up one of the home site, else of
	// another site. Optional.
	Directs []Hop `yaml:"directs"`
}

// directs is Direct followed by Directs.
func (rt Route) directs() []Hop {
	var out []Hop
	if rt.Direct != nil {
		out = append(out, *rt.Direct)
	}
	return append(out, rt.Directs...)
}

// ProbeConfig tunes path probing and selection.
type ProbeConfig struct {
	// Interval between probes on each next hop. Default 250ms.
	Interval config.Duration `yaml:"interval"`
	// Timeout after which an unanswered probe counts as lost. Default 1s.
	Timeout config.Duration `yaml:"timeout"`
	// Window is how many recent probes loss and jitter are computed over. Default 20.
	Window int `yaml:"window"`
	// DownAfter: a hop that answers no probe for Timeout plus DownAfter-1
	// intervals is down: new flows avoid it. Default 3.
	DownAfter int `yaml:"down_after"`
	// DeadAfter: a hop silent this long is dead: its connection is closed,
	// which ends the flows on it so their clients reconnect over the new
	// path (a hop that is only congested keeps its flows). Default 4s.
	DeadAfter config.Duration `yaml:"dead_after"`
	// Hysteresis: a new path replaces the current one only when its score is
	// this fraction better. Default 0.2.
	Hysteresis float64 `yaml:"hysteresis"`
	// MinGain: and at least this much better in absolute terms. Default 2ms.
	MinGain config.Duration `yaml:"min_gain"`
}

// RoutingConfig is the forwarding side of an edge or relay.
type RoutingConfig struct {
	Routes []Route `yaml:"routes"`
	// HomeSite is the core site this node prefers: among the up hops of a
	// route (and among its direct egresses), those labelled with another
	// site take flows only while none of the home site (or unlabelled) is
	// up; new flows go home again once one is. Edges default it to their
	// site.
	// Default "": no preference.
	HomeSite string      `yaml:"home_site"`
	Probe    ProbeConfig `yaml:"probe"`
	// HopBudget is the budget an edge writes into new streams. Default 8.
	HopBudget int `yaml:"hop_budget"`
	// OpenTimeout bounds opening a stream on a next hop. Default 3s.
	OpenTimeout config.Duration `yaml:"open_timeout"`
	// Redundancy is how many copies of a stream this node opens per kind
	// (TUNNEL.md, "Sequenced streams").
	Redundancy RedundancyConfig `yaml:"redundancy"`
	// Lanes is how many connections this node keeps to each next hop
	// (TUNNEL.md, "Lanes"), at least the largest Redundancy value so that
	// the copies of one stream ride different connections. Flows are
	// spread over the lanes: each lane's congestion controller then sees a
	// share of the traffic, and a loss on one lane slows only its share.
	// Default 8.
	Lanes int `yaml:"lanes"`
	// Resume makes streams outlive the path they started on.
	Resume ResumeConfig `yaml:"resume"`
	// Disjoint sends the small frames of every stream and UDP flow this
	// node opens over a second next hop too (TUNNEL.md, "Disjoint copies").
	Disjoint DisjointConfig `yaml:"disjoint"`
}

// DisjointConfig: a copy of the small frames over a disjoint path. A lossy
// or stalled relay then delays a small frame only when the other relay
// does too. Each link, link-frames and http stream an edge opens gets one
// more copy, through another relay than its other copies, that carries
// only records of at most MaxFrame bytes (each side merges the copies by
// record number); each UDP flow gets a second flow through another relay
// that carries only datagrams of at most MaxFrame bytes (both numbered,
// each side keeps the first of each number). Bulk (larger records and
// datagrams) travels once. A stream gets its copy when another relay
// than its own is up (at once, or when one comes up); a UDP flow only when
// one is as it opens.
type DisjointConfig struct {
	// Enabled turns the disjoint copies on. Default false.
	Enabled bool `yaml:"enabled"`
	// MaxFrame is the largest record (what one read of the client's or the
	// service's connection returned: about one Link frame) or UDP datagram
	// payload that the disjoint copy carries, in bytes. Default 1024: chat
	// messages and audio packets, not video packets near the MTU or file
	// transfers.
	MaxFrame int `yaml:"max_frame"`
}

// small is the disjoint copies' record limit, 0 when they are off.
func (d DisjointConfig) small() int {
	if !d.Enabled {
		return 0
	}
	return d.MaxFrame
}

// ResumeConfig makes tunnel streams outlive their path (TUNNEL.md,
// "Sequenced streams").
type ResumeConfig struct {
	// Enabled: every link, link-frames and http stream this node opens is
	// sequenced, and when its path fails it resumes on another path from
	// the last byte the far end acknowledged: the client's connection goes
	// on. Off: a path's death ends its streams and their clients
	// reconnect. Default true.
	Enabled bool `yaml:"enabled"`
	// After is how long a next hop's probes may go unanswered before the
	// sequenced streams through it move to other paths (they start over
	// from what the far end acknowledged, so moving off a hop that was
	// only slow costs nothing but the move). The hop stays up for new
	// flows until probe.down_after. Default 600ms; at least two probe
	// intervals.
	After config.Duration `yaml:"after"`
	// Buffer is how many bytes of each stream and direction are kept until
	// the far end acknowledges them; writers wait beyond it. It bounds a
	// stream's memory and its throughput to Buffer per round trip.
	// Default 512 KiB.
	Buffer int `yaml:"buffer"`
	// Grace is how long a stream whose copies all failed looks for a new
	// path (the opener), or waits for a new copy (the egress, which keeps
	// the service connection meanwhile), before it ends. Default 10s.
	Grace config.Duration `yaml:"grace"`
}

// MaxLanes bounds routing.lanes: every lane is a connection and a UDP
// socket per next hop.
const MaxLanes = 16

// RedundancyConfig gives the number of copies per stream kind, 1 (off) to
// wire.MaxCopies. Each copy carries every byte of its stream over the
// backbone: N copies cost N times the stream's backbone bytes.
type RedundancyConfig struct {
	// LinkFrames: Link connections the edge terminated (small IM frames,
	// latency-sensitive). Default 2.
	LinkFrames int `yaml:"link_frames"`
	// Link: Link passthrough. Default 1.
	Link int `yaml:"link"`
	// HTTP: WebLink. Default 1.
	HTTP int `yaml:"http"`
}

// copies returns the number of copies for a stream of kind k.
func (r RedundancyConfig) copies(k wire.Kind) int {
	switch k {
	case wire.KindLinkFrames:
		return r.LinkFrames
	case wire.KindLink:
		return r.Link
	case wire.KindHTTP:
		return r.HTTP
	}
	return 1
}

// most is the largest number of copies of any kind.
func (r RedundancyConfig) most() int { return max(1, r.LinkFrames, r.Link, r.HTTP) }

// DefaultRouting returns the routing defaults.
func DefaultRouting() RoutingConfig {
	return RoutingConfig{
		Probe: ProbeConfig{
			Interval:   config.Duration(250 * time.Millisecond),
			Timeout:    config.Duration(time.Second),
			Window:     20,
			DownAfter:  3,
			DeadAfter:  config.Duration(4 * time.Second),
			Hysteresis: 0.2,
			MinGain:    config.Duration(2 * time.Millisecond),
		},
		HopBudget:   8,
		OpenTimeout: config.Duration(3 * time.Second),
		Redundancy:  RedundancyConfig{LinkFrames: 2, Link: 1, HTTP: 1},
		Lanes:       8,
		Resume: ResumeConfig{Enabled: true, After: config.Duration(600 * time.Millisecond), Buffer: 512 << 10,
			Grace: config.Duration(10 * time.Second)},
		Disjoint: DisjointConfig{MaxFrame: 1024},
	}
}

func validHop(errs *config.Errors, where string, h Hop) {
	switch h.Transport {
	case "quic", "kcp", "mem":
	default:
		errs.Addf("%s.transport: %q is not quic or kcp", where, h.Transport)
	}
	if h.Address == "" {
		errs.Addf("%s.address: must be set", where)
	}
	if h.Site != "" && !lbsapi.ValidSite(h.Site) {
		errs.Addf("%s.site: %q: want a lower-case DNS label (a-z 0-9 -), as the LBS policy's sites", where, h.Site)
	}
}

func (r *RoutingConfig) validate(errs *config.Errors, prefix string) {
	seen := map[string]bool{}
	for i, rt := range r.Routes {
		where := fmt.Sprintf("%sroutes[%d]", prefix, i)
		if rt.Cluster == "" || len(rt.Cluster) > wire.MaxNameLen {
			errs.Addf("%s.cluster: must be 1..%d characters", where, wire.MaxNameLen)
		}
		if seen[rt.Cluster] {
			errs.Addf("%s.cluster: %q listed twice", where, rt.Cluster)
		}
		seen[rt.Cluster] = true
		if len(rt.NextHops) == 0 && len(rt.directs()) == 0 {
			errs.Addf("%s: needs next_hops or direct", where)
		}
		for j, h := range rt.NextHops {
			validHop(errs, fmt.Sprintf("%s.next_hops[%d]", where, j), h)
		}
		if rt.Direct != nil {
			validHop(errs, where+".direct", *rt.Direct)
		}
		for j, h := range rt.Directs {
			validHop(errs, fmt.Sprintf("%s.directs[%d]", where, j), h)
		}
	}
	if r.HomeSite != "" && !lbsapi.ValidSite(r.HomeSite) {
		errs.Addf("%shome_site: %q: want a lower-case DNS label (a-z 0-9 -), as the LBS policy's sites", prefix, r.HomeSite)
	}
	p := r.Probe
	if p.Interval.D() < 10*time.Millisecond {
		errs.Addf("%sprobe.interval: must be at least 10ms", prefix)
	}
	if p.Timeout.D() < p.Interval.D() {
		errs.Addf("%sprobe.timeout: must be at least probe.interval", prefix)
	}
	if p.Window < 2 || p.Window > 1000 {
		errs.Addf("%sprobe.window: must be 2..1000", prefix)
	}
	if p.DownAfter < 1 {
		errs.Addf("%sprobe.down_after: must be at least 1", prefix)
	}
	if p.DeadAfter.D() < p.Timeout.D() {
		errs.Addf("%sprobe.dead_after: must be at least probe.timeout", prefix)
	}
	if p.Hysteresis < 0 || p.Hysteresis >= 1 {
		errs.Addf("%sprobe.hysteresis: must be in [0, 1)", prefix)
	}
	if r.HopBudget < 1 || r.HopBudget > wire.MaxHops {
		errs.Addf("%shop_budget: must be 1..%d", prefix, wire.MaxHops)
	}
	if r.OpenTimeout.D() <= 0 {
		errs.Addf("%sopen_timeout: must be positive", prefix)
	}
	for _, k := range []struct {
		name string
		n    int
	}{{"link_frames", r.Redundancy.LinkFrames}, {"link", r.Redundancy.Link}, {"http", r.Redundancy.HTTP}} {
		if k.n < 1 || k.n > wire.MaxCopies {
			errs.Addf("%sredundancy.%s: must be 1..%d", prefix, k.name, wire.MaxCopies)
		}
	}
	if rs := r.Resume; rs.After.D() < 2*p.Interval.D() || rs.After.D() >= p.DeadAfter.D() {
		errs.Addf("%sresume.after: %v must be at least two probe intervals (%v) and below probe.dead_after (%v)", prefix, rs.After.D(), 2*p.Interval.D(), p.DeadAfter.D())
	}
	if rs := r.Resume; rs.Buffer < 64<<10 || rs.Buffer > 64<<20 {
		errs.Addf("%sresume.buffer: %d must be 64 KiB to 64 MiB", prefix, rs.Buffer)
	}
	if r.Resume.Grace.D() < time.Second {
		errs.Addf("%sresume.grace: must be at least 1s", prefix)
	}
	if d := r.Disjoint; d.MaxFrame < 1 || d.MaxFrame > wire.MaxRecordLen {
		errs.Addf("%sdisjoint.max_frame: %d must be 1..%d", prefix, d.MaxFrame, wire.MaxRecordLen)
	} else if most := r.Redundancy.most(); d.Enabled && most+1 > wire.MaxCopies {
		errs.Addf("%sdisjoint.enabled: the disjoint copy and the %d copies redundancy asks for exceed the %d copies a stream may have", prefix, most, wire.MaxCopies)
	}
	if r.Lanes < 1 || r.Lanes > MaxLanes {
		errs.Addf("%slanes: must be 1..%d", prefix, MaxLanes)
	} else if most := r.Redundancy.most(); r.Lanes < most {
		errs.Addf("%slanes: %d is fewer than the %d copies redundancy asks for (copies of a stream need lanes of their own)", prefix, r.Lanes, most)
	}
}

// SecurityConfig holds the cluster credentials of a node.
type SecurityConfig struct {
	// CAFile is the cluster CA bundle (PEM) that peers' certificates must chain to (QUIC).
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are this node's certificate and key (PEM), issued by the cluster CA.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ClusterKey authenticates and encrypts KCP packets; at least 16 bytes.
	// Accepts "file:/path" and "env:NAME".
	ClusterKey config.Secret `yaml:"cluster_key"`
}

// TransportConfig tunes the tunnel transports.
type TransportConfig struct {
	QUIC QUICOptions `yaml:"quic"`
	KCP  KCPOptions  `yaml:"kcp"`
}

// QUICOptions tunes QUIC.
type QUICOptions struct {
	// KeepAlive between nodes. Default 2s.
	KeepAlive config.Duration `yaml:"keep_alive"`
	// IdleTimeout closes a silent connection. Default 10s.
	IdleTimeout config.Duration `yaml:"idle_timeout"`
	// MaxStreams a peer may have open at once. Default 100000.
	MaxStreams int64 `yaml:"max_streams"`
	// SocketBuffer asked of the OS for each UDP socket. Default 7 MiB.
	SocketBuffer int `yaml:"socket_buffer"`
}

// KCPOptions tunes KCP.
type KCPOptions struct {
	// Profile is fast, normal, bulk or backbone. Default fast.
	Profile string `yaml:"profile"`
	// DataShards/ParityShards configure FEC; 0/0 disables it. Default 10/3.
	DataShards   int `yaml:"data_shards"`
	ParityShards int `yaml:"parity_shards"`
	// KeepAlive of the smux session. Default 2s.
	KeepAlive    config.Duration `yaml:"keep_alive"`
	SocketBuffer int             `yaml:"socket_buffer"`
}

// DefaultTransport returns the transport defaults.
func DefaultTransport() TransportConfig {
	return TransportConfig{
		QUIC: QUICOptions{KeepAlive: config.Duration(2 * time.Second), IdleTimeout: config.Duration(10 * time.Second), MaxStreams: 100000, SocketBuffer: 7 << 20},
		KCP:  KCPOptions{Profile: "fast", DataShards: 10, ParityShards: 3, KeepAlive: config.Duration(2 * time.Second), SocketBuffer: 7 << 20},
	}
}

func (t *TransportConfig) validate(errs *config.Errors) {
	if _, ok := transport.KCPProfiles[t.KCP.Profile]; !ok {
		errs.Addf("transport.kcp.profile: %q is not fast, normal, bulk or backbone", t.KCP.Profile)
	}
	if t.KCP.DataShards < 0 || t.KCP.ParityShards < 0 || (t.KCP.DataShards == 0) != (t.KCP.ParityShards == 0) {
		errs.Addf("transport.kcp: data_shards and parity_shards must both be 0 or both positive")
	}
	if t.QUIC.IdleTimeout.D() <= t.QUIC.KeepAlive.D() {
		errs.Addf("transport.quic.idle_timeout: must exceed keep_alive")
	}
}

// Config is a relay node: it accepts tunnels on its listeners and forwards
// each stream to the best next hop for its destination cluster. With Egress
// set it also terminates streams for its own cluster (see NewEgress).
type Config struct {
	// Name identifies the node in logs and in the LBS. Default "relay".
	Name string `yaml:"name"`
	// Site is the data centre the node runs in (a lower-case DNS label, as
	// the LBS policy's sites): longlink_relay_node_info{site}, and the LBS
	// heartbeat label "site" unless lbs.labels sets one. Default "".
	Site string `yaml:"site"`
	// Listen maps a transport ("quic", "kcp") to its UDP listen address.
	// Default (when the key is absent): quic 127.0.0.1:7740, kcp 127.0.0.1:7741.
	Listen    map[string]string `yaml:"listen"`
	Security  SecurityConfig    `yaml:"security"`
	Transport TransportConfig   `yaml:"transport"`
	Routing   RoutingConfig     `yaml:"routing"`
	// Egress, when set, makes this node a core egress for Egress.Cluster.
	Egress *EgressSection `yaml:"egress"`
	// HeaderTimeout bounds reading a stream's header. Default 10s.
	HeaderTimeout config.Duration `yaml:"header_timeout"`
	// MaxStreams this node carries at once; more are refused. Default 200000.
	MaxStreams int `yaml:"max_streams"`
	// LBS, when set, makes the relay report to the LBS (lbs/nodeclient):
	// its streams and its next hops' measured paths, which the operators'
	// console shows; node is the relay's entry point id (kind relay).
	LBS *nodeclient.Config `yaml:"lbs"`
}

// EgressSection configures the terminating side at the core.
type EgressSection struct {
	// Cluster is the cluster this egress serves.
	Cluster string `yaml:"cluster"`
	// Services maps a service name to where it lives at the core site.
	// Default (when the key is absent): link → 127.0.0.1:7710 (kind link),
	// link-frames → 127.0.0.1:7713 (kind link-frames: a gateway's
	// plain_listen), weblink → 127.0.0.1:7711 (kind http).
	Services map[string]Service `yaml:"services"`
	// DialTimeout bounds connecting to a service. Default 5s.
	DialTimeout config.Duration `yaml:"dial_timeout"`
	// UDPIdleTimeout closes a UDP flow with no traffic either way. Default 2m.
	UDPIdleTimeout config.Duration `yaml:"udp_idle_timeout"`
}

// Service is one service behind the egress.
type Service struct {
	// Kind is link (TCP), link-frames (Link terminated at the edge, to a
	// gateway's plain_listen), http (WebLink) or udp.
	Kind string `yaml:"kind"`
	// Address is the service's host:port at the core site.
	Address string `yaml:"address"`
	// ProxyProtocol writes a PROXY v2 header with the client's address
	// before any byte of a TCP flow. Default true for link and http.
	ProxyProtocol *bool `yaml:"proxy_protocol"`
}

func (s Service) proxy() bool { return s.ProxyProtocol == nil || *s.ProxyProtocol }

// Default returns a relay's defaults (docs/ports.md: 7740/udp QUIC, 7741/udp KCP).
func Default() Config {
	return Config{
		Name:          "relay",
		Transport:     DefaultTransport(),
		Routing:       DefaultRouting(),
		HeaderTimeout: config.Duration(10 * time.Second),
		MaxStreams:    200000,
	}
}

// Validate checks the config and reports every problem.
func (c *Config) Validate() error {
	var errs config.Errors
	c.validate(&errs)
	return errs.Err()
}

func (c *Config) validate(errs *config.Errors) {
	if c.Listen == nil {
		if c.Egress != nil {
			c.Listen = map[string]string{"quic": "127.0.0.1:7745", "kcp": "127.0.0.1:7746"}
		} else {
			c.Listen = map[string]string{"quic": "127.0.0.1:7740", "kcp": "127.0.0.1:7741"}
		}
	}
	if len(c.Listen) == 0 {
		errs.Addf("listen: at least one transport listener is required")
	}
	if c.Site != "" && !lbsapi.ValidSite(c.Site) {
		errs.Addf("site: %q: want a lower-case DNS label (a-z 0-9 -), as the LBS policy's sites", c.Site)
	}
	if c.LBS != nil {
		if err := c.LBS.Validate(); err != nil {
			errs.Addf("lbs: %v", err)
		}
	}
	for tr, addr := range c.Listen {
		if tr != "quic" && tr != "kcp" && tr != "mem" {
			errs.Addf("listen.%s: unknown transport (want quic or kcp)", tr)
		}
		if addr == "" {
			errs.Addf("listen.%s: address must be set", tr)
		}
	}
	c.Transport.validate(errs)
	c.Routing.validate(errs, "routing.")
	if c.Egress == nil && len(c.Routing.Routes) == 0 {
		errs.Addf("routing.routes: a relay without egress needs at least one route")
	}
	if c.Egress != nil {
		c.Egress.validate(errs)
	}
	if c.HeaderTimeout.D() <= 0 {
		errs.Addf("header_timeout: must be positive")
	}
	if c.MaxStreams < 1 {
		errs.Addf("max_streams: must be positive")
	}
}

func (e *EgressSection) validate(errs *config.Errors) {
	if e.Services == nil {
		e.Services = map[string]Service{
			"link":        {Kind: "link", Address: "127.0.0.1:7710"},
			"link-frames": {Kind: "link-frames", Address: "127.0.0.1:7713"},
			"weblink":     {Kind: "http", Address: "127.0.0.1:7711"},
		}
	}
	if e.Cluster == "" || len(e.Cluster) > wire.MaxNameLen {
		errs.Addf("egress.cluster: must be 1..%d characters", wire.MaxNameLen)
	}
	if len(e.Services) == 0 {
		errs.Addf("egress.services: at least one service is required")
	}
	for name, s := range e.Services {
		if len(name) > wire.MaxNameLen {
			errs.Addf("egress.services.%s: name too long", name)
		}
		k, err := wire.ParseKind(s.Kind)
		if err != nil {
			errs.Addf("egress.services.%s.kind: %v", name, err)
		}
		if k == wire.KindLinkFrames && !s.proxy() {
			// The gateway's pre-terminated listener needs the client's address.
			errs.Addf("egress.services.%s.proxy_protocol: must be on for kind link-frames", name)
		}
		if s.Address == "" {
			errs.Addf("egress.services.%s.address: must be set", name)
		}
	}
	if e.DialTimeout.D() <= 0 {
		e.DialTimeout = config.Duration(5 * time.Second)
	}
	if e.UDPIdleTimeout.D() <= 0 {
		e.UDPIdleTimeout = config.Duration(2 * time.Minute)
	}
}

// EgressConfig is the core-side tunnel terminator: `longlink core` runs it
// next to its gateways.
type EgressConfig struct {
	Name string `yaml:"name"`
	// Site is the core site the egress runs in (longlink_relay_node_info;
	// a core node sets it from its own site).
	Site          string            `yaml:"site"`
	Listen        map[string]string `yaml:"listen"`
	Security      SecurityConfig    `yaml:"security"`
	Transport     TransportConfig   `yaml:"transport"`
	EgressSection `yaml:",inline"`
	HeaderTimeout config.Duration `yaml:"header_timeout"`
	MaxStreams    int             `yaml:"max_streams"`
}

// DefaultEgress returns the egress defaults (docs/ports.md: 7745/udp QUIC,
// 7746/udp KCP; Link gateway 7710, WebLink 7711).
func DefaultEgress() EgressConfig {
	return EgressConfig{
		Name:      "egress",
		Transport: DefaultTransport(),
		EgressSection: EgressSection{
			Cluster:        "default",
			DialTimeout:    config.Duration(5 * time.Second),
			UDPIdleTimeout: config.Duration(2 * time.Minute),
		},
		HeaderTimeout: config.Duration(10 * time.Second),
		MaxStreams:    200000,
	}
}

func (e *EgressConfig) node() Config {
	sec := e.EgressSection
	return Config{
		Name: e.Name, Site: e.Site, Listen: e.Listen, Security: e.Security, Transport: e.Transport,
		Routing: DefaultRouting(), Egress: &sec, HeaderTimeout: e.HeaderTimeout, MaxStreams: e.MaxStreams,
	}
}

// Validate checks the config and reports every problem; absent listen and
// services keys get their defaults.
func (e *EgressConfig) Validate() error {
	c := e.node()
	err := c.Validate()
	e.Listen, e.EgressSection = c.Listen, *c.Egress
	return err
}

// Validate checks a routing section on its own (edges embed one).
func (r *RoutingConfig) Validate() error {
	var errs config.Errors
	r.validate(&errs, "routing.")
	return errs.Err()
}

// Validate checks a transport section on its own (edges embed one).
func (t *TransportConfig) Validate() error {
	var errs config.Errors
	t.validate(&errs)
	return errs.Err()
}
