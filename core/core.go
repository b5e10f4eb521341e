// Package core is the composition root of an IM core node: the bus (embedded
// NATS or an external cluster), the store, the app services, the Link gateway
// and the server HTTP API. `longlink core` runs one node from a YAML file;
// `longlink dev` runs one with embedded defaults beside the LBS and an edge.
//
// A node can play every role (the default) or only some of them: a
// gateway-only node joins an existing bus to hold more connections, an
// app-only node adds service capacity.
package core

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/longlink/longlink/core/bus"
	"github.com/longlink/longlink/core/callsvc"
	"github.com/longlink/longlink/core/gateway"
	"github.com/longlink/longlink/core/push"
	"github.com/longlink/longlink/core/ratelimit"
	"github.com/longlink/longlink/core/route"
	"github.com/longlink/longlink/core/serverapi"
	"github.com/longlink/longlink/core/service"
	"github.com/longlink/longlink/core/store"
	"github.com/longlink/longlink/core/webhook"
	"github.com/longlink/longlink/core/weblink"
	"github.com/longlink/longlink/lbs/lbsapi"
	"github.com/longlink/longlink/lbs/nodeclient"
	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/pkg/debugsrv"
	"github.com/longlink/longlink/pkg/lifecycle"
	"github.com/longlink/longlink/pkg/logging"
	"github.com/longlink/longlink/relay"
)

// startTimeout bounds Start.
const startTimeout = 30 * time.Second

// Roles selects what a node runs. All default to true.
type Roles struct {
	// Services runs the app services (and needs the store).
	Services bool `yaml:"services"`
	// Gateway runs the Link gateway.
	Gateway bool `yaml:"gateway"`
	// ServerAPI runs the server HTTP API's front: its listener, which
	// forwards every request over the bus to the app's cluster (every
	// service node answers them), so it needs no services of its own.
	ServerAPI bool `yaml:"server_api"`
	// WebLink runs the Socket.IO endpoint (and needs the gateway).
	WebLink bool `yaml:"weblink"`
	// Call runs the call service: TURN credentials and call signalling.
	// Off by default: it needs the TURN shared secrets and sites.
	Call bool `yaml:"call"`
	// Egress terminates tunnels from edges and relays at this core site and
	// hands flows to the local gateway and WebLink with PROXY v2 headers.
	// Off by default: it needs the cluster's tunnel credentials.
	Egress bool `yaml:"egress"`
}

// Config is the configuration of one core node.
type Config struct {
	// DataDir holds the SQLite database and the embedded NATS server's
	// JetStream files. Default ./.longlink/core.
	DataDir string `yaml:"data_dir"`
	// DebugListen serves /metrics, /healthz, /readyz and pprof. Default
	// 127.0.0.1:7719; "" disables it.
	DebugListen string `yaml:"debug_listen"`
	// Site names the data centre the node runs in (a lower-case DNS label,
	// as the LBS policy's entry point sites). It labels the node's service
	// announcements (explain shows where each service node runs), its LBS
	// heartbeats (label "site" unless lbs.labels sets one) and its metrics
	// (longlink_core_node_info, longlink_service_node_info). Routing across
	// sites is the bus's: each site's NATS cluster serves its own nodes
	// first (docs/cluster.md, "Two sites"). Default "": one site.
	Site  string `yaml:"site"`
	Roles Roles  `yaml:"roles"`

	Bus       bus.Config       `yaml:"bus"`
	Store     store.Config     `yaml:"store"`
	Service   service.Config   `yaml:"service"`
	Gateway   gateway.Config   `yaml:"gateway"`
	ServerAPI serverapi.Config `yaml:"server_api"`
	WebLink   weblink.Config   `yaml:"weblink"`
	Call      callsvc.Config   `yaml:"call"`
	// Webhook configures the apps' webhooks (data sync, login/logout
	// events, the moderation hook). Apps without an entry get none.
	Webhook webhook.Config `yaml:"webhook"`
	// Push configures offline push (providers per app, workers) and the
	// presence registry that gateways and app services share.
	Push   push.Config        `yaml:"push"`
	Egress relay.EgressConfig `yaml:"egress"`
	// RateLimit tunes the cluster-wide rate limits (core/ratelimit): the
	// server API's per-app rate and the chatrooms' message rates.
	RateLimit ratelimit.Config `yaml:"ratelimit"`
	// Routing says which appkeys have a dedicated service cluster. The
	// gateways (Link and WebLink) and the server API send every request of
	// an app to its cluster; grayscale rules come from the LBS (lbs:).
	Routing route.Config `yaml:"routing"`
	// LBS, when its servers are set, is where the gateway registers and
	// reports health and load (as entry point LBS.Node, by default its
	// gateway.id) and takes its grayscale rules from, and where it
	// announces its drain on shutdown so clients are sent elsewhere first.
	// With roles.call, the call service also takes its TURN secrets from
	// the LBS: call.secrets is the start-up set, replaced by the LBS's set
	// when it arrives and on every rotation; an LBS that holds no secrets
	// leaves the working set as it is.
	LBS nodeclient.Config `yaml:"lbs"`
}

// Default returns a node that plays every role on embedded defaults.
func Default() Config {
	return Config{
		DataDir:     ".longlink/core",
		DebugListen: "127.0.0.1:7719",
		Roles:       Roles{Services: true, Gateway: true, ServerAPI: true, WebLink: true},
		Bus:         bus.Default(),
		Store:       store.Default(),
		Service:     service.Default(),
		Gateway:     gateway.Default(),
		ServerAPI:   serverapi.Default(),
		WebLink:     weblink.Default(),
		Webhook:     webhook.Default(),
		Push:        push.Default(),
		Call:        callsvc.Default(),
		Egress:      relay.DefaultEgress(),
		Routing:     route.Default(),
		RateLimit:   ratelimit.Default(),
	}
}

// Validate checks the node as a whole; each part validates itself too.
func (c *Config) Validate() error {
	var errs config.Errors
	if c.DataDir == "" {
		errs.Addf("data_dir: must be set")
	}
	if c.Site != "" && !lbsapi.ValidSite(c.Site) {
		errs.Addf("site: %q: want a lower-case DNS label (a-z 0-9 -), as the LBS policy's sites", c.Site)
	}
	r := c.Roles
	if !r.Services && !r.Gateway && !r.ServerAPI {
		errs.Addf("roles: at least one role must be enabled")
	}
	if r.Services {
		st := c.withPaths().Store
		if err := st.Validate(); err != nil {
			errs.Addf("store: %w", err)
		}
		if err := c.Service.Validate(); err != nil {
			errs.Addf("service: %w", err)
		}
	}
	if r.Gateway {
		if err := c.Gateway.Validate(); err != nil {
			errs.Addf("gateway: %w", err)
		}
	}
	if r.Services || r.Gateway {
		if err := c.Push.Validate(); err != nil {
			errs.Addf("push: %w", err)
		}
		if c.Bus.Mode == bus.ModeEmbedded && !c.Bus.JetStream {
			errs.Addf("bus.jetstream: presence, offline push and the event log need JetStream")
		}
	}
	if r.ServerAPI || r.Services {
		if err := c.ServerAPI.Validate(); err != nil {
			errs.Addf("server_api: %w", err)
		}
	}
	if len(c.Webhook.Apps) > 0 {
		if !r.Services {
			errs.Addf("webhook: needs roles.services on the same node")
		}
		if err := c.Webhook.Validate(); err != nil {
			errs.Addf("webhook: %w", err)
		}
	}
	if r.Services {
		if err := c.RateLimit.Validate(); err != nil {
			errs.Addf("%w", err)
		}
	}
	if err := c.Routing.Validate(); err != nil {
		errs.Addf("%w", err)
	}
	if r.WebLink && !r.Gateway {
		errs.Addf("roles.weblink: needs roles.gateway on the same node")
	}
	if r.WebLink {
		if err := c.WebLink.Validate(); err != nil {
			errs.Addf("weblink: %w", err)
		}
	}
	if r.Call {
		if err := c.Call.Validate(); err != nil {
			errs.Addf("call: %w", err)
		}
	}
	if r.Egress {
		if err := c.Egress.Validate(); err != nil {
			errs.Addf("egress: %w", err)
		}
	}
	if len(c.LBS.Servers) > 0 {
		if !r.Gateway {
			errs.Addf("lbs: only a gateway node reports to the LBS")
		}
		lc := c.LBS
		if lc.Node == "" {
			lc.Node = c.Gateway.ID // New fills it in so
		}
		if err := lc.Validate(); err != nil {
			errs.Addf("lbs: %w", err)
		}
	}
	return errs.Err()
}

// normalized is c as New runs it: paths under data_dir, ids and site
// labels carried to the parts that need them, the service version from
// the binary's when unset.
func (c Config) normalized(version string) Config {
	c = c.withPaths()
	if c.Gateway.ID == "" {
		// The presence reporter and the gateway must agree on the id.
		c.Gateway.ID = gateway.Default().ID
	}
	if len(c.LBS.Servers) > 0 && c.LBS.Node == "" {
		// A gateway reports as the entry point named like itself.
		c.LBS.Node = c.Gateway.ID
	}
	c.Service.Site = c.Site
	if c.Egress.Site == "" {
		c.Egress.Site = c.Site
	}
	if c.Site != "" && len(c.LBS.Servers) > 0 && c.LBS.Labels["site"] == "" {
		labels := map[string]string{"site": c.Site}
		for k, v := range c.LBS.Labels {
			labels[k] = v
		}
		c.LBS.Labels = labels
	}
	if c.Service.Version == "" && lbsapi.ValidVersionLabel(version) {
		c.Service.Version = version
	}
	return c
}

// withPaths fills the file locations that live under DataDir.
func (c Config) withPaths() Config {
	if c.Store.Driver == store.DriverSQLite && c.Store.Path == "" {
		c.Store.Path = filepath.Join(c.DataDir, "core.db")
	}
	if c.Bus.Mode == bus.ModeEmbedded && c.Bus.StoreDir == "" {
		c.Bus.StoreDir = filepath.Join(c.DataDir, "nats")
	}
	return c
}

// Deps are the node's injected dependencies.
type Deps struct {
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer
	// LinkListener, when set, replaces the gateway's own listener (tests).
	LinkListener net.Listener
	// Egress carries the tunnel credentials (mutual TLS for QUIC, the
	// cluster key for KCP) when they do not come from files.
	Egress relay.Deps
	// DemoLogins lets the WebLink demo page offer ready-made logins
	// (longlink dev only: it hands out tokens).
	DemoLogins func(ctx context.Context) ([]weblink.DemoLogin, error)
	// DemoLBS are the LBS URLs the demo page's SDK asks (dev only).
	DemoLBS []string
	// PushHTTPClient, when set, is the push providers' HTTP client (tests
	// point the providers at local stand-ins with their own certificate).
	PushHTTPClient *http.Client
	// Version is the binary's version: the service nodes' version label
	// (grayscale routing) when service.version is not set.
	Version string
}

// Node is one running core node.
type Node struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
	// live is the config as of the last Reload; cfg keeps what applies
	// only at start.
	live     atomic.Pointer[Config]
	reloadMu sync.Mutex

	group    *lifecycle.Group
	debug    *debugsrv.Server
	bus      *bus.Bus
	store    store.Store
	service  *service.Service
	gateway  *gateway.Gateway
	api      *serverapi.Server // answers forwarded requests (services role)
	front    *serverapi.Front  // the HTTP listener (server_api role)
	limits   *ratelimit.Limiter
	web      *weblink.WebLink
	hooks    *webhook.Webhooks
	push     *push.Push
	pres     *push.Registry
	reporter *push.Reporter
	call     *callsvc.Service
	egress   *relay.Node
	report   *nodeclient.Client
	routes   *route.Table
	nodes    *route.Nodes // service nodes heard on the bus (gateway role)
}

// lazy is a part that is built only when the group starts it, because it
// needs the parts started before it (a running bus, an open store); dst
// keeps it for the node's accessors.
func lazy[C lifecycle.Component](dst *C, build func() (C, error)) lifecycle.Component {
	return lifecycle.Func{
		StartFunc: func(ctx context.Context) error {
			c, err := build()
			if err != nil {
				return err
			}
			*dst = c
			return c.Start(ctx)
		},
		ShutdownFunc: func(ctx context.Context) error { return (*dst).Shutdown(ctx) },
	}
}

// load is what the gateway reports to the LBS with each heartbeat: its
// logged-in sessions on every transport (Link and WebLink).
// setDrained passes an operator's drain from the LBS to the gateway
// (sessions moved elsewhere over gateway.operator_drain_time).
func (n *Node) setDrained(on bool) {
	if n.gateway != nil {
		n.gateway.SetDrained(on)
	}
}

func (n *Node) load() nodeclient.Load {
	return nodeclient.Load{Connections: n.gateway.Sessions()}
}

// New validates cfg and prepares a node; Start runs it.
func New(cfg Config, deps Deps) (*Node, error) {
	cfg = cfg.normalized(deps.Version)
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("core: %w", err)
	}
	deps.Logger = logging.OrDiscard(deps.Logger)
	if deps.Registerer == nil {
		reg := prometheus.NewRegistry()
		deps.Registerer, deps.Gatherer = reg, reg
	}
	if deps.Gatherer == nil {
		deps.Gatherer = prometheus.DefaultGatherer
	}
	n := &Node{cfg: cfg, deps: deps, log: deps.Logger.With("component", "core")}
	n.live.Store(&cfg)
	return n, nil
}

// boundAdvertise is what a gateway without gateway.advertise announces for
// chatroom placement: this node's bound addresses.
func (n *Node) boundAdvertise() []string {
	var addrs []string
	if a := n.LinkAddr(); a != "" {
		addrs = append(addrs, "link://"+a)
	}
	if a := n.WebLinkAddr(); a != "" {
		addrs = append(addrs, "weblink://"+a)
	}
	return addrs
}

// Start brings the parts up in dependency order: debug listener, bus,
// store, services, gateway, server API. A failure stops what was started.
func (n *Node) Start(ctx context.Context) error {
	// Start-up is bounded: a bus or database that never answers must fail
	// the start, not hang it.
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	if err := os.MkdirAll(n.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("core: data dir: %w", err)
	}
	n.group = lifecycle.NewGroup(n.log)
	if n.cfg.DebugListen != "" {
		ln, err := net.Listen("tcp", n.cfg.DebugListen)
		if err != nil {
			return fmt.Errorf("core: debug listener: %w", err)
		}
		n.debug = debugsrv.New(ln, n.deps.Gatherer, n.log)
		n.group.Add("debug", lifecycle.Func{
			StartFunc:    func(context.Context) error { n.debug.Start(); return nil },
			ShutdownFunc: n.debug.Shutdown,
		})
	}
	b, err := bus.New(n.cfg.Bus, bus.Deps{Logger: n.deps.Logger, Registerer: n.deps.Registerer})
	if err != nil {
		return fmt.Errorf("core: %w", err)
	}
	n.bus = b
	n.group.Add("bus", b)
	if err := registerNodeInfo(n.deps.Registerer, n.cfg); err != nil {
		return fmt.Errorf("core: %w", err)
	}
	presMetrics, err := push.NewPresenceMetrics(n.deps.Registerer)
	if err != nil {
		return fmt.Errorf("core: %w", err)
	}
	if n.routes, err = route.New(n.cfg.Routing, route.Deps{Logger: n.deps.Logger, Registerer: n.deps.Registerer}); err != nil {
		return fmt.Errorf("core: %w", err)
	}
	// The parts below need a running bus or store, so they are built as the
	// group starts them.
	if n.cfg.Roles.Services {
		n.group.Add("store", lifecycle.Func{
			StartFunc: func(ctx context.Context) error {
				st, err := store.Open(ctx, n.cfg.Store, store.Deps{Logger: n.deps.Logger, Registerer: n.deps.Registerer})
				if err != nil {
					return err
				}
				n.store = st
				return nil
			},
			ShutdownFunc: func(context.Context) error { return n.store.Close() },
		})
		if len(n.cfg.Webhook.Apps) > 0 {
			n.group.Add("webhook", lazy(&n.hooks, func() (*webhook.Webhooks, error) {
				return webhook.New(n.cfg.Webhook, webhook.Deps{
					JetStream: n.bus.JetStream(), Replicas: n.bus.Replicas(), Logger: n.deps.Logger, Registerer: n.deps.Registerer,
				})
			}))
		}
		n.group.Add("presence-registry", lazy(&n.pres, func() (*push.Registry, error) {
			return push.NewRegistry(n.cfg.Push.Presence, push.RegistryDeps{
				JetStream: n.bus.JetStream(), Replicas: n.bus.Replicas(), Logger: n.deps.Logger, Metrics: presMetrics,
			})
		}))
		n.group.Add("push", lazy(&n.push, func() (*push.Push, error) {
			deps := push.Deps{
				NATS: n.bus.Conn(), Replicas: n.bus.Replicas(), Store: n.store, Presence: n.pres, Logger: n.deps.Logger, Registerer: n.deps.Registerer,
				HTTPClient: n.deps.PushHTTPClient,
			}
			if n.hooks != nil {
				deps.Events = n.hooks
			}
			// The relationships' mute lists: a muted conversation sends
			// no notification.
			deps.Mute = n.store
			return push.New(n.cfg.Push, deps)
		}))
		n.group.Add("ratelimit", lazy(&n.limits, func() (*ratelimit.Limiter, error) {
			return ratelimit.New(n.cfg.RateLimit, ratelimit.Deps{
				JetStream: n.bus.JetStream(), Replicas: n.bus.Replicas(), Logger: n.deps.Logger, Registerer: n.deps.Registerer,
			})
		}))
		n.group.Add("service", lazy(&n.service, func() (*service.Service, error) {
			deps := service.Deps{
				NATS: n.bus.Conn(), Store: n.store, Logger: n.deps.Logger, Registerer: n.deps.Registerer,
				JetStream: n.bus.JetStream(), Replicas: n.bus.Replicas(),
				Offline:  n.push,
				EventLog: n.push,
				Limits:   n.limits,
			}
			if n.hooks != nil {
				deps.Hooks = n.hooks
			}
			return service.New(n.cfg.Service, deps)
		}))
	}
	if n.cfg.Roles.Gateway {
		n.group.Add("presence-reporter", lazy(&n.reporter, func() (*push.Reporter, error) {
			return push.NewReporter(n.cfg.Push.Presence, push.ReporterDeps{
				JetStream: n.bus.JetStream(), Replicas: n.bus.Replicas(), Gateway: n.cfg.Gateway.ID, Logger: n.deps.Logger, Metrics: presMetrics,
			})
		}))
		n.group.Add("service-nodes", lifecycle.Func{
			StartFunc: func(context.Context) (err error) {
				n.nodes, err = n.routes.WatchNodes(n.bus.Conn())
				return err
			},
			ShutdownFunc: func(context.Context) error { return n.nodes.Close() },
		})
		n.group.Add("gateway", lazy(&n.gateway, func() (*gateway.Gateway, error) {
			g, err := gateway.New(n.cfg.Gateway, gateway.Deps{
				NATS: n.bus.Conn(), Registerer: n.deps.Registerer, Logger: n.deps.Logger,
				Listener: n.deps.LinkListener, Presence: n.reporter, Routes: n.routes,
			})
			if err == nil && n.reporter != nil {
				// The reporter repairs the bucket from the gateway's own
				// sessions rather than a copy of each.
				n.reporter.SetLive(g.SessionInfos)
			}
			return g, err
		}))
	}
	if n.cfg.Roles.Call {
		n.group.Add("call", lazy(&n.call, func() (*callsvc.Service, error) {
			return callsvc.New(n.cfg.Call, callsvc.Deps{
				NATS: n.bus.Conn(), Logger: n.deps.Logger, Registerer: n.deps.Registerer,
			})
		}))
	}
	if n.cfg.Roles.WebLink {
		n.group.Add("weblink", lazy(&n.web, func() (*weblink.WebLink, error) {
			return weblink.New(n.cfg.WebLink, weblink.Deps{
				Gateway: n.gateway, Logger: n.deps.Logger, Registerer: n.deps.Registerer,
				DemoLogins: n.deps.DemoLogins,
				DemoLBS:    n.deps.DemoLBS,
			})
		}))
	}
	if n.cfg.Roles.Services {
		n.group.Add("server_api", lazy(&n.api, func() (*serverapi.Server, error) {
			deps := serverapi.Deps{
				Service: n.service, Store: n.store, NATS: n.bus.Conn(), JetStream: n.bus.JetStream(), Replicas: n.bus.Replicas(),
				Limits: n.limits, Node: n.serviceNode(), Logger: n.deps.Logger, Registerer: n.deps.Registerer,
			}
			if n.call != nil {
				deps.Calls = n.call
			}
			if n.hooks != nil {
				deps.DeadLetters = n.hooks
			}
			return serverapi.New(n.cfg.ServerAPI, deps)
		}))
	}
	if n.cfg.Roles.ServerAPI {
		n.group.Add("server_api_front", lazy(&n.front, func() (*serverapi.Front, error) {
			return serverapi.NewFront(n.cfg.ServerAPI, serverapi.FrontDeps{
				NATS: n.bus.Conn(), Routes: n.routes, Logger: n.deps.Logger, Registerer: n.deps.Registerer,
			})
		}))
	}
	if len(n.cfg.LBS.Servers) > 0 {
		// After the gateway and WebLink: the LBS hears of this node only once
		// it can take clients, and hears of its drain before they stop.
		n.group.Add("lbs-report", lazy(&n.report, func() (*nodeclient.Client, error) {
			nd := nodeclient.Deps{Logger: n.deps.Logger, Load: n.load, OnGrayscale: n.routes.SetGrayscale, OnDrained: n.setDrained,
				Routing: func() nodeclient.Routing {
					return nodeclient.Routing{Clusters: n.routes.Clusters(), ServiceNodes: n.nodes.Live()}
				}}
			if n.call != nil {
				// The LBS's TURN secrets replace call.secrets (the start-up
				// set) when they arrive; an empty set on the LBS changes nothing.
				nd.OnTurnSecrets = n.call.SetSecrets
			}
			return nodeclient.New(n.cfg.LBS, nd)
		}))
	}
	if n.cfg.Roles.Egress {
		// Last to start, first to stop: edges stop sending new flows here
		// before the gateways drain.
		deps := egressDeps(n.deps)
		n.group.Add("egress", lazy(&n.egress, func() (*relay.Node, error) {
			return relay.NewEgress(n.cfg.Egress, deps)
		}))
	}
	if err := n.group.Start(ctx); err != nil {
		return fmt.Errorf("core: %w", err)
	}
	if n.gateway != nil && len(n.cfg.Gateway.Advertise) == 0 {
		n.gateway.SetAdvertise(n.boundAdvertise())
	}
	if n.debug != nil {
		n.debug.SetReady(true)
	}
	return nil
}

// Shutdown drains the node: not ready first, then the parts in reverse
// order (the gateway sheds its sessions gradually before the services and
// the bus go away).
func (n *Node) Shutdown(ctx context.Context) error {
	if n.group == nil {
		return nil
	}
	if n.debug != nil {
		n.debug.SetReady(false)
	}
	return n.group.Shutdown(ctx)
}

// Bus is the node's bus (after Start).
func (n *Node) Bus() *bus.Bus { return n.bus }

// Store is the node's store (after Start; nil without the services role).
func (n *Node) Store() store.Store { return n.store }

// Service is the node's app services (after Start; nil without the role).
func (n *Node) Service() *service.Service { return n.service }

// Call is the call service, or nil when the node does not run it.
func (n *Node) Call() *callsvc.Service { return n.call }

// Push is the offline push component (after Start; nil without the
// services role).
func (n *Node) Push() *push.Push { return n.push }

// Presence is the presence registry (after Start; nil without the services
// role).
func (n *Node) Presence() *push.Registry { return n.pres }

// Gateway is the node's gateway (after Start; nil without the role).
func (n *Node) Gateway() *gateway.Gateway { return n.gateway }

// LinkAddr is the bound Link address, or "" when the node has no Link listener.
func (n *Node) LinkAddr() string {
	if n.gateway == nil || n.gateway.Addr() == nil {
		return ""
	}
	return n.gateway.Addr().String()
}

// WebLinkAddr is the bound WebLink address, or "".
func (n *Node) WebLinkAddr() string {
	if n.web == nil || n.web.Addr() == nil {
		return ""
	}
	return n.web.Addr().String()
}

// EgressAddr is the bound tunnel address of a transport ("quic", "kcp"), or "".
func (n *Node) EgressAddr(transport string) string {
	if n.egress == nil {
		return ""
	}
	if a := n.egress.Addr(transport); a != nil {
		return a.String()
	}
	return ""
}

// egressDeps fills in the egress's logger and registry.
func egressDeps(d Deps) relay.Deps {
	e := d.Egress
	if e.Logger == nil {
		e.Logger = d.Logger
	}
	if e.Registerer == nil {
		e.Registerer = d.Registerer
	}
	return e
}

// ServerAPIAddr is the bound server API address, or "".
func (n *Node) ServerAPIAddr() string {
	if n.front == nil {
		return ""
	}
	return n.front.Addr()
}

// serviceNode is this node's place in the routing as a service node.
func (n *Node) serviceNode() route.Node { return n.cfg.Service.Node() }
