package clustertest

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// NATSOptions shape a NATS cluster.
type NATSOptions struct {
	// Site places the servers (nil: the environment's).
	Site *Site
	// Sites, when set, places server i at Sites[i % len(Sites)] instead: a
	// cluster stretched over several sites.
	Sites []*Site
	// Name is the cluster's name (in a super-cluster, its gateway name).
	// Default "longlink".
	Name string
	// Nodes is the number of servers. Default 3; one is a single server
	// (no cluster).
	Nodes int
	// NoJetStream runs the servers without JetStream: in a super-cluster,
	// their clients' JetStream requests go to the clusters that have it.
	NoJetStream bool
	// PingInterval and PingMax: a server pings each client this often and
	// closes a client that leaves PingMax pings unanswered, which drops a
	// hung (paused) node's subscriptions, queue groups included, within
	// about PingInterval × (PingMax+1). Defaults 500ms and 2.
	PingInterval time.Duration
	PingMax      int
	// Extra is appended to every server's configuration.
	Extra string
}

// NATS is a running NATS cluster: servers that route to each other over
// mutual TLS with their own credentials, accept clients only on TLS with a
// certificate from the environment's CA plus user and password, and run
// JetStream clustered.
type NATS struct {
	Nodes []*NATSNode
	// User and Password are the clients' credentials; PasswordFile holds
	// the password (for `file:` in configs).
	User, Password, PasswordFile string
	// ClientCert and ClientKey are a client certificate for the longlink
	// processes (the servers verify clients).
	ClientCert, ClientKey string
	// RoutePassword authenticates the servers to each other.
	RoutePassword string
	opts          NATSOptions
}

// NATSNode is one nats-server process.
type NATSNode struct {
	*Proc
	// ServerName is its name in the cluster (JetStream peers).
	ServerName string
	// ClientURL is tls://host:port; RouteURL its cluster listener;
	// MonitorURL its HTTP monitoring endpoint; GatewayAddr its gateway
	// listener (host:port) in a super-cluster.
	ClientURL, RouteURL, MonitorURL, GatewayAddr string
	ConfigPath                                   string

	host   string
	client int
	route  int
	mon    int
	gw     int
	dir    string
}

// StartNATS starts a NATS cluster and waits until every server is healthy
// with a JetStream meta leader.
func (e *Env) StartNATS(o NATSOptions) *NATS {
	e.t.Helper()
	return e.StartSuperCluster(o)[0]
}

// StartSuperCluster starts NATS clusters joined by gateways into one
// super-cluster (one cluster: no gateways) and waits until every server is
// healthy. The gateways authenticate with their own password over mutual
// TLS. A JetStream super-cluster has one meta group over every server
// that runs JetStream; a stream lives in one cluster.
func (e *Env) StartSuperCluster(clusters ...NATSOptions) []*NATS {
	e.t.Helper()
	var out []*NATS
	for _, o := range clusters {
		out = append(out, e.prepareNATS(o))
	}
	gwPassword := ""
	if len(out) > 1 {
		gwPassword, _ = e.Secret(e.MkDir("nats-gateways"), "gateway-password")
	}
	for _, n := range out {
		n.write(e, out, gwPassword)
	}
	for _, n := range out {
		for _, node := range n.Nodes {
			if err := node.Start(); err != nil {
				e.t.Fatal(err)
			}
		}
	}
	for _, n := range out {
		for _, node := range n.Nodes {
			if err := node.WaitHealthy(60 * time.Second); err != nil {
				e.t.Fatal(err)
			}
		}
	}
	return out
}

func (e *Env) prepareNATS(o NATSOptions) *NATS {
	if o.Site == nil {
		o.Site = e.Site
	}
	if o.Name == "" {
		o.Name = "longlink"
	}
	if o.Nodes == 0 {
		o.Nodes = 3
	}
	if o.PingInterval == 0 {
		o.PingInterval = 500 * time.Millisecond
	}
	if o.PingMax == 0 {
		o.PingMax = 2
	}
	dir := e.MkDir("nats-" + o.Site.Name + "-" + o.Name)
	n := &NATS{User: "longlink", opts: o}
	n.Password, n.PasswordFile = e.Secret(dir, "client-password")
	n.RoutePassword, _ = e.Secret(dir, "route-password")
	n.ClientCert, n.ClientKey = e.Cert(dir, "client", "longlink-client")
	for i := range o.Nodes {
		site := o.Site
		if len(o.Sites) > 0 {
			site = o.Sites[i%len(o.Sites)]
		}
		host := site.host()
		name := fmt.Sprintf("%s-%s-%d", site.Name, o.Name, i+1)
		node := &NATSNode{ServerName: name, host: host, client: e.Port(host), route: e.Port(host), mon: e.Port(host), gw: e.Port(host),
			dir: filepath.Join(dir, fmt.Sprint(i+1))}
		if err := os.MkdirAll(node.dir, 0o755); err != nil {
			e.t.Fatal(err)
		}
		node.ConfigPath = filepath.Join(node.dir, "nats.conf")
		node.Proc = e.NewProc(site, "nats-"+name, e.Bins.NATSServer, "-c", node.ConfigPath)
		node.engine = true
		node.ClientURL = fmt.Sprintf("tls://%s:%d", host, node.client)
		node.RouteURL = fmt.Sprintf("nats-route://%s:%d", host, node.route)
		node.MonitorURL = fmt.Sprintf("http://%s:%d", host, node.mon)
		n.Nodes = append(n.Nodes, node)
	}
	return n
}

// write writes every server's configuration; all are the clusters of the
// super-cluster (n among them).
func (n *NATS) write(e *Env, all []*NATS, gwPassword string) {
	o := n.opts
	for i, node := range n.Nodes {
		cert, key := e.Cert(node.dir, "server", node.host, "localhost")
		var routes []string
		for j, p := range n.Nodes {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats-route://route:%s@%s:%d", n.RoutePassword, p.host, p.route))
			}
		}
		tlsBlock := fmt.Sprintf("{\n    cert_file: %q\n    key_file: %q\n    ca_file: %q\n    verify: true\n    timeout: 2\n  }", cert, key, e.CAFile)
		conf := fmt.Sprintf(`server_name: %q
listen: "%s:%d"
http: "%s:%d"
ping_interval: %q
ping_max: %d
write_deadline: "2s"
authorization {
  user: %q
  password: %q
}
tls %s
`, node.ServerName, node.host, node.client, node.host, node.mon, o.PingInterval.String(), o.PingMax, n.User, n.Password, tlsBlock)
		if !o.NoJetStream {
			conf += fmt.Sprintf(`jetstream {
  store_dir: %q
  max_memory_store: 256MB
  max_file_store: 2GB
}
`, filepath.Join(node.dir, "jetstream"))
		}
		if o.Nodes > 1 {
			conf += fmt.Sprintf(`cluster {
  name: %q
  listen: "%s:%d"
  authorization {
    user: route
    password: %q
  }
  tls %s
  routes: [
    %s
  ]
}
`, o.Name, node.host, node.route, n.RoutePassword, tlsBlock, strings.Join(routes, "\n    "))
		}
		if len(all) > 1 {
			node.GatewayAddr = fmt.Sprintf("%s:%d", node.host, node.gw)
			var remotes []string
			for _, other := range all {
				if other == n {
					continue
				}
				var urls []string
				for _, p := range other.Nodes {
					urls = append(urls, fmt.Sprintf("%q", fmt.Sprintf("nats://gateway:%s@%s:%d", gwPassword, p.host, p.gw)))
				}
				remotes = append(remotes, fmt.Sprintf("{name: %q, urls: [%s]}", other.opts.Name, strings.Join(urls, ", ")))
			}
			conf += fmt.Sprintf(`gateway {
  name: %q
  listen: "%s:%d"
  authorization {
    user: gateway
    password: %q
  }
  tls %s
  gateways: [
    %s
  ]
}
`, o.Name, node.host, node.gw, gwPassword, tlsBlock, strings.Join(remotes, "\n    "))
		}
		conf += o.Extra + "\n"
		if err := os.WriteFile(node.ConfigPath, []byte(conf), 0o600); err != nil {
			e.t.Fatal(err)
		}
	}
}

// URLs are the client URLs of every server.
func (n *NATS) URLs() []string {
	out := make([]string, len(n.Nodes))
	for i, node := range n.Nodes {
		out[i] = node.ClientURL
	}
	return out
}

// WaitHealthy waits until the server answers /healthz with 200: it accepts
// clients and its JetStream is current with a meta leader.
func (n *NATSNode) WaitHealthy(timeout time.Duration) error {
	err := poll(timeout, func() error {
		select {
		case <-n.Exited():
			return fmt.Errorf("%w: %v", errExited, n.ExitErr())
		default:
		}
		resp, err := http.Get(n.MonitorURL + "/healthz")
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("healthz %d: %s", resp.StatusCode, b)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("clustertest: %s not healthy: %w\n%s", n.Name, err, n.Tail(20))
	}
	return nil
}
