package lbs

import (
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/longlink/longlink/geo"
	"github.com/longlink/longlink/pkg/config"
)

// Config configures one LBS cluster member.
type Config struct {
	// NodeID names this member in the raft group. Required.
	NodeID string `yaml:"node_id"`
	// DataDir holds the raft log (raft-wal), snapshots and, in dev, the CA.
	DataDir string `yaml:"data_dir"`

	// Listeners. "127.0.0.1:0" picks a free port (tests).
	ClientListen string `yaml:"client_listen"` // SDK HTTP JSON and /resolve; default 127.0.0.1:7700
	AdminListen  string `yaml:"admin_listen"`  // admin HTTPS; default 127.0.0.1:7701
	RaftListen   string `yaml:"raft_listen"`   // raft over mutual TLS; default 127.0.0.1:7702
	// RaftAdvertise is the raft address peers dial; RaftListen's when empty.
	RaftAdvertise string `yaml:"raft_advertise"`

	Cluster Cluster    `yaml:"cluster"`
	TLS     TLS        `yaml:"tls"`
	DNS     DNS        `yaml:"dns"`
	Geo     geo.Config `yaml:"geo"`
	Health  Health     `yaml:"health"`
	RUM     RUMIntake  `yaml:"rum"`

	// AdminToken is an operator bearer token accepted besides the tokens kept
	// in the replicated state (needed to create those). Required.
	AdminToken config.Secret `yaml:"admin_token"`
	// ReaderToken, when set, is a read-only operator token accepted besides
	// the reader tokens kept in the replicated state: it reads everything
	// an operator reads (the console's viewers, dashboards) and changes
	// nothing.
	ReaderToken config.Secret `yaml:"reader_token"`
	// NodeToken, when set, is a bearer token any node may use to report
	// (dev and small clusters); per-node tokens live in the replicated state.
	NodeToken config.Secret `yaml:"node_token"`
	// TrustedProxies are CIDRs whose X-Forwarded-For is believed.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// InitialPolicy is a routing document (YAML) applied when this member
	// bootstraps a cluster whose state is empty (dev mode).
	InitialPolicy string `yaml:"initial_policy"`
	// MaxRequestBytes bounds admin request bodies. 0 means 4 MiB.
	MaxRequestBytes int64 `yaml:"max_request_bytes"`
}

// Cluster configures raft membership.
type Cluster struct {
	// Bootstrap creates the cluster on first start: alone, or with Peers.
	Bootstrap bool `yaml:"bootstrap"`
	// Peers are the initial voters (including this member) when
	// bootstrapping a multi-member cluster at once.
	Peers []Peer `yaml:"peers"`
	// Join lists admin URLs of existing members; a member that has no state
	// and does not bootstrap asks them to add it.
	Join []string `yaml:"join"`

	HeartbeatTimeout config.Duration `yaml:"heartbeat_timeout"` // default 500ms
	ElectionTimeout  config.Duration `yaml:"election_timeout"`  // default 500ms
	LeaderLease      config.Duration `yaml:"leader_lease"`      // default 250ms
}

// Peer is one raft voter.
type Peer struct {
	ID      string `yaml:"id"`
	Address string `yaml:"address"`
}

// TLS configures the certificates for raft (mutual TLS) and the admin API.
// Either CADir (a CA that signs this node's certificate at start-up; dev and
// simple clusters sharing the CA files) or CAFile+CertFile+KeyFile.
type TLS struct {
	CADir    string `yaml:"ca_dir"`
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// Names are extra DNS names / IPs for the node certificate (CADir mode).
	Names []string `yaml:"names"`
}

// DNS configures the authoritative DNS front end.
type DNS struct {
	// Listen is the UDP and TCP address; empty disables DNS. Default 127.0.0.1:7753.
	Listen string `yaml:"listen"`
	// Zone is the zone served, e.g. "lbs.example.com.". Names are
	// <protocol>.<appkey>.<zone> (protocol link, weblink or turn) and
	// <entry point id>.ep.<zone>.
	Zone string `yaml:"zone"`
	// Sockets is how many SO_REUSEPORT UDP sockets to open. 0 means one per CPU.
	Sockets int `yaml:"sockets"`
	// Workers per socket reading and answering. 0 means 4.
	Workers int `yaml:"workers"`
	// MaxTCP bounds concurrent TCP connections. 0 means 256.
	MaxTCP int `yaml:"max_tcp"`
	// RateLimit is responses per second per client /24 (/56 for IPv6);
	// 0 means 200; negative disables response rate limiting.
	RateLimit float64 `yaml:"rate_limit"`
	// RateBurst is the bucket size. 0 means 2×RateLimit.
	RateBurst float64 `yaml:"rate_burst"`
	// TTL overrides the policy's answer TTL for DNS. 0 means the policy's (capped at 60s).
	TTL config.Duration `yaml:"ttl"`
}

// Health configures heartbeat intake and hysteresis.
type Health struct {
	// Interval is how often nodes report. Default 1s.
	Interval config.Duration `yaml:"interval"`
	// DownAfter missed intervals mark a node down. Default 3.
	DownAfter int `yaml:"down_after"`
	// UpAfter good heartbeats bring it back. Default 2.
	UpAfter int `yaml:"up_after"`
	// Watermark is the load fraction (connections/capacity or CPU) above
	// which a node is overloaded; it is up again below Watermark-0.1.
	// Default: the policy's shed_at, else 0.9.
	Watermark float64 `yaml:"watermark"`
}

// RUMIntake bounds what this member takes of SDKs' measurement reports
// (POST /v1/rum). How they steer answers is the policy's `rum:` section.
type RUMIntake struct {
	// Rate is reports per second accepted from one client /24 (/56);
	// Burst is its bucket. Defaults 1 and 20.
	Rate  float64 `yaml:"rate"`
	Burst float64 `yaml:"burst"`
	// MaxRate is reports per second this member accepts in all. Default 2000.
	MaxRate float64 `yaml:"max_rate"`
	// MaxPrefixes bounds the client prefixes whose rate is tracked at once
	// (a report from a new prefix beyond it is refused). Default 65536.
	MaxPrefixes int `yaml:"max_prefixes"`
	// Interval is how often the member proposes what it gathered to the
	// cluster. Default 2s.
	Interval config.Duration `yaml:"interval"`
	// MaxPending bounds the (prefix, entry point) sums held between two
	// proposals; samples beyond it are dropped and counted. Default 65536.
	MaxPending int `yaml:"max_pending"`
}

// Default returns the defaults.
func Default() Config {
	g := geo.Default()
	return Config{
		ClientListen: "127.0.0.1:7700", AdminListen: "127.0.0.1:7701", RaftListen: "127.0.0.1:7702",
		DataDir: "lbs-data",
		Cluster: Cluster{HeartbeatTimeout: config.Duration(500 * time.Millisecond), ElectionTimeout: config.Duration(500 * time.Millisecond),
			LeaderLease: config.Duration(250 * time.Millisecond)},
		DNS:    DNS{Listen: "127.0.0.1:7753", Zone: "lbs.longlink.test.", Workers: 4, MaxTCP: 256, RateLimit: 200},
		Geo:    g,
		Health: Health{Interval: config.Duration(time.Second), DownAfter: 3, UpAfter: 2},
		RUM: RUMIntake{Rate: 1, Burst: 20, MaxRate: 2000, MaxPrefixes: 65536, Interval: config.Duration(2 * time.Second),
			MaxPending: 65536},
		MaxRequestBytes: 4 << 20,
	}
}

// Validate checks the configuration and reports every problem.
func (c *Config) Validate() error {
	var errs config.Errors
	if c.NodeID == "" {
		errs.Addf("node_id: required")
	}
	if c.DataDir == "" {
		errs.Addf("data_dir: required")
	}
	for _, l := range []struct{ k, v string }{{"client_listen", c.ClientListen}, {"admin_listen", c.AdminListen}, {"raft_listen", c.RaftListen}} {
		if _, _, err := net.SplitHostPort(l.v); err != nil {
			errs.Addf("%s: %v", l.k, err)
		}
	}
	if c.DNS.Listen != "" {
		if _, _, err := net.SplitHostPort(c.DNS.Listen); err != nil {
			errs.Addf("dns.listen: %v", err)
		}
		if !strings.HasSuffix(c.DNS.Zone, ".") || len(c.DNS.Zone) < 2 {
			errs.Addf("dns.zone: %q must be a fully qualified name ending in '.'", c.DNS.Zone)
		}
	}
	if c.TLS.CADir == "" && (c.TLS.CAFile == "" || c.TLS.CertFile == "" || c.TLS.KeyFile == "") {
		errs.Addf("tls: set ca_dir, or ca_file, cert_file and key_file")
	}
	if c.AdminToken.Reveal() == "" {
		errs.Addf("admin_token: required (file:/path or env:NAME)")
	} else if len(c.AdminToken.Reveal()) < 16 {
		errs.Addf("admin_token: at least 16 characters")
	}
	if rt := c.ReaderToken.Reveal(); rt != "" && (len(rt) < 16 || rt == c.AdminToken.Reveal()) {
		errs.Addf("reader_token: at least 16 characters, and not the admin_token")
	}
	for i, p := range c.TrustedProxies {
		if _, err := netip.ParsePrefix(p); err != nil {
			errs.Addf("trusted_proxies[%d]: %v", i, err)
		}
	}
	if c.Cluster.Bootstrap && len(c.Cluster.Join) > 0 {
		errs.Addf("cluster: bootstrap and join exclude each other")
	}
	seen := map[string]bool{}
	for i, p := range c.Cluster.Peers {
		if p.ID == "" || p.Address == "" || seen[p.ID] {
			errs.Addf("cluster.peers[%d]: unique id and address required", i)
		}
		seen[p.ID] = true
	}
	if len(c.Cluster.Peers) > 0 && !seen[c.NodeID] {
		errs.Addf("cluster.peers: must include this node (%q)", c.NodeID)
	}
	if c.Health.DownAfter < 1 || c.Health.UpAfter < 1 || c.Health.Interval.D() <= 0 {
		errs.Addf("health: interval > 0, down_after >= 1, up_after >= 1")
	}
	if c.Health.Watermark < 0 || c.Health.Watermark > 1 {
		errs.Addf("health.watermark: not in 0..1")
	}
	if r := c.RUM; r.Rate <= 0 || r.Burst < 1 || r.MaxRate <= 0 || r.MaxPrefixes < 64 || r.Interval.D() < 10*time.Millisecond || r.MaxPending < 1 {
		errs.Addf("rum: rate > 0, burst >= 1, max_rate > 0, max_prefixes >= 64, interval >= 10ms, max_pending >= 1")
	}
	if err := c.Geo.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errs.Err()
}
