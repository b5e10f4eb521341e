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
	// Name is the cluster's name. Default "longlink".
	Name string
	// Nodes is the number of servers. Default 3; one is a single server
	// (no cluster).
	Nodes int
	// PingInterval and PingMax: a server pings each client this often and
	// closes a client that leaves PingMax pings unanswered, which drops a
	// hung (paused) node's subscriptions, queue groups included, within
	// about PingInterval × (PingMax+1). Defaults 500ms and 2.
	PingInterval time.Duration
	PingMax      int
	// Extra is appended to every server's configuration (e.g. a gateway
	// block joining another site's cluster).
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
	// MonitorURL its HTTP monitoring endpoint.
	ClientURL, RouteURL, MonitorURL string
	ConfigPath                      string
}

// StartNATS starts a NATS cluster and waits until every server is healthy
// with a JetStream meta leader.
func (e *Env) StartNATS(o NATSOptions) *NATS {
	e.t.Helper()
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
	host := o.Site.host()
	dir := e.MkDir("nats-" + o.Site.Name + "-" + o.Name)
	n := &NATS{User: "longlink", opts: o}
	n.Password, n.PasswordFile = e.Secret(dir, "client-password")
	n.RoutePassword, _ = e.Secret(dir, "route-password")
	n.ClientCert, n.ClientKey = e.Cert(dir, "client", "longlink-client")
	type ports struct{ client, route, mon int }
	ps := make([]ports, o.Nodes)
	for i := range ps {
		ps[i] = ports{e.Port(host), e.Port(host), e.Port(host)}
	}
	for i := range o.Nodes {
		name := fmt.Sprintf("%s-%s-%d", o.Site.Name, o.Name, i+1)
		ndir := filepath.Join(dir, fmt.Sprint(i+1))
		if err := os.MkdirAll(ndir, 0o755); err != nil {
			e.t.Fatal(err)
		}
		cert, key := e.Cert(ndir, "server", host, "localhost")
		var routes []string
		for j, p := range ps {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats-route://route:%s@%s:%d", n.RoutePassword, host, p.route))
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
jetstream {
  store_dir: %q
  max_memory_store: 256MB
  max_file_store: 2GB
}
`, name, host, ps[i].client, host, ps[i].mon, o.PingInterval.String(), o.PingMax, n.User, n.Password, tlsBlock,
			filepath.Join(ndir, "jetstream"))
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
`, o.Name, host, ps[i].route, n.RoutePassword, tlsBlock, strings.Join(routes, "\n    "))
		}
		conf += o.Extra + "\n"
		cfgPath := filepath.Join(ndir, "nats.conf")
		if err := os.WriteFile(cfgPath, []byte(conf), 0o600); err != nil {
			e.t.Fatal(err)
		}
		node := &NATSNode{
			Proc:       e.NewProc(o.Site, "nats-"+name, e.Bins.NATSServer, "-c", cfgPath),
			ServerName: name,
			ClientURL:  fmt.Sprintf("tls://%s:%d", host, ps[i].client),
			RouteURL:   fmt.Sprintf("nats-route://%s:%d", host, ps[i].route),
			MonitorURL: fmt.Sprintf("http://%s:%d", host, ps[i].mon),
			ConfigPath: cfgPath,
		}
		node.engine = true
		n.Nodes = append(n.Nodes, node)
	}
	for _, node := range n.Nodes {
		if err := node.Start(); err != nil {
			e.t.Fatal(err)
		}
	}
	for _, node := range n.Nodes {
		if err := node.WaitHealthy(60 * time.Second); err != nil {
			e.t.Fatal(err)
		}
	}
	return n
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
			return fmt.Errorf("exited: %v", n.ExitErr())
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
