package clustertest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/longlink/longlink/core/link"
	"github.com/longlink/longlink/core/sdk"
	"github.com/longlink/longlink/core/serverapi"
)

// ClusterOptions shape a deployment.
type ClusterOptions struct {
	// NATS and PG shape the engines.
	NATS NATSOptions
	PG   PGOptions
	// Gateways and Services are how many gateway-only and service-only
	// processes to start (named gw-1…, svc-1…). Defaults 2 and 3.
	Gateways, Services int
	// Gateway and Service are merged into every such process's options
	// (Config, LogLevel, Site).
	Gateway, Service CoreOptions
	// Apps are seeded by the service nodes. Default: one app "demo".
	Apps []App
	// LBSPolicy, when set, starts an LBS member with this routing document
	// first; every gateway reports to it (as the entry point named like the
	// gateway) and takes its grayscale rules from it.
	LBSPolicy string
}

// Cluster is a deployment of real processes: a NATS cluster, PostgreSQL,
// gateway-only and service-only core processes.
type Cluster struct {
	Env  *Env
	NATS *NATS
	PG   *Postgres
	// LBS is the LBS member when ClusterOptions.LBSPolicy was set.
	LBS  *LBS
	Key  link.KeyPair
	Apps []App

	opts ClusterOptions
	// prefix starts the names of the processes it starts ("a-": a site's).
	prefix string
	mu     sync.Mutex
	gws    []*Core
	svcs   []*Core
	next   map[string]int
}

// StartCluster starts the engines, then the service and gateway processes,
// and waits until every one is ready.
func StartCluster(t testing.TB, o ClusterOptions) *Cluster {
	t.Helper()
	e := New(t)
	if o.Gateways == 0 {
		o.Gateways = 2
	}
	if o.Services == 0 {
		o.Services = 3
	}
	if len(o.Apps) == 0 {
		var b [12]byte
		_, _ = rand.Read(b[:])
		o.Apps = []App{{AppKey: "demo", Secret: hex.EncodeToString(b[:])}}
	}
	key, err := link.GenerateKey("k1")
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{Env: e, Key: key, Apps: o.Apps, opts: o, next: map[string]int{}}
	c.PG = e.StartPostgres(o.PG)
	c.NATS = e.StartNATS(o.NATS)
	if o.LBSPolicy != "" {
		c.LBS = e.StartLBS(o.LBSPolicy)
		cfg := map[string]any{"lbs": c.LBS.Reporting()}
		merge(cfg, o.Gateway.Config)
		c.opts.Gateway.Config = cfg
	}
	var svcs, gws []*Core
	for range o.Services {
		svcs = append(svcs, c.prepare(true, CoreOptions{}))
	}
	for range o.Gateways {
		gws = append(gws, c.prepare(false, CoreOptions{}))
	}
	// The first service node runs the migrations; the others then start together.
	c.start(svcs[:1])
	c.start(svcs[1:])
	c.start(gws)
	return c
}

// Deps are what the cluster's core processes connect to.
func (c *Cluster) Deps() CoreDeps {
	return CoreDeps{NATS: c.NATS, PG: c.PG, Key: c.Key, Apps: c.Apps}
}

func (c *Cluster) prepare(services bool, o CoreOptions) *Core {
	base, role := c.opts.Gateway, "gw"
	if services {
		base, role = c.opts.Service, "svc"
	}
	if o.Site == nil {
		o.Site = base.Site
	}
	if o.LogLevel == "" {
		o.LogLevel = base.LogLevel
	}
	cfg := map[string]any{}
	merge(cfg, base.Config)
	merge(cfg, o.Config)
	o.Config = cfg
	c.mu.Lock()
	if o.Name == "" {
		c.next[role]++
		o.Name = fmt.Sprintf("%s%s-%d", c.prefix, role, c.next[role])
	}
	c.mu.Unlock()
	o.Gateway, o.Services = !services, services
	core := c.Env.PrepareCore(c.Deps(), o)
	c.mu.Lock()
	if services {
		c.svcs = append(c.svcs, core)
	} else {
		c.gws = append(c.gws, core)
	}
	c.mu.Unlock()
	return core
}

func (c *Cluster) start(cs []*Core) {
	t := c.Env.t
	t.Helper()
	for _, core := range cs {
		if err := core.Start(); err != nil {
			t.Fatal(err)
		}
	}
	for _, core := range cs {
		if err := core.WaitReady(60 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
}

// AddService starts one more service node (o may be zero) and waits until it is ready.
func (c *Cluster) AddService(o CoreOptions) *Core {
	core := c.prepare(true, o)
	c.start([]*Core{core})
	return core
}

// AddGateway starts one more gateway (o may be zero) and waits until it is ready.
func (c *Cluster) AddGateway(o CoreOptions) *Core {
	core := c.prepare(false, o)
	c.start([]*Core{core})
	return core
}

// Gateways and Services list the processes started so far (running or not).
func (c *Cluster) Gateways() []*Core {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Core(nil), c.gws...)
}

func (c *Cluster) Services() []*Core {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Core(nil), c.svcs...)
}

// API calls the server HTTP API through the first running gateway (its
// front forwards to a service node of the app's cluster), signed as app
// (the first app when ""), and decodes the answer into out (may be nil). A
// non-2xx answer is an error carrying the body.
func (c *Cluster) API(ctx context.Context, appkey, method, path string, in, out any) error {
	var gw *Core
	for _, g := range c.Gateways() {
		if g.Running() {
			gw = g
			break
		}
	}
	if gw == nil {
		return fmt.Errorf("clustertest: no running gateway")
	}
	return c.APIVia(ctx, gw, appkey, method, path, in, out)
}

// APIVia is API through the front of gateway gw.
func (c *Cluster) APIVia(ctx context.Context, gw *Core, appkey, method, path string, in, out any) error {
	app := c.Apps[0]
	for _, a := range c.Apps {
		if a.AppKey == appkey {
			app = a
		}
	}
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return err
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+gw.APIAddr+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	var nonce [12]byte
	_, _ = rand.Read(nonce[:])
	serverapi.Sign(req, app.AppKey, app.Secret, hex.EncodeToString(nonce[:]), time.Now(), body)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("clustertest: %s %s: %d %s", method, path, resp.StatusCode, bytes.TrimSpace(b))
	}
	if out != nil && len(b) > 0 {
		return json.Unmarshal(b, out)
	}
	return nil
}

// Users creates accounts of the first app through the server API and
// returns their login tokens.
func (c *Cluster) Users(ctx context.Context, accounts ...string) (map[string]string, error) {
	return c.AppUsers(ctx, "", accounts...)
}

// AppUsers is Users for the app appkey.
func (c *Cluster) AppUsers(ctx context.Context, appkey string, accounts ...string) (map[string]string, error) {
	out := map[string]string{}
	for _, a := range accounts {
		var u serverapi.CreateUserResp
		if err := c.API(ctx, appkey, http.MethodPost, "/v1/users", map[string]any{"account": a}, &u); err != nil {
			return nil, err
		}
		out[a] = u.Token
	}
	return out, nil
}

// SDKConfig is an SDK client's configuration for account of the first app,
// dialling the given gateways' Link listeners in order (every gateway's
// when none is given).
func (c *Cluster) SDKConfig(account, token string, gws ...*Core) sdk.Config {
	if len(gws) == 0 {
		gws = c.Gateways()
	}
	var addrs []string
	for _, g := range gws {
		addrs = append(addrs, g.LinkAddr)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	return sdk.Config{
		Addresses:  addrs,
		ServerKeys: map[string][]byte{c.Key.ID: c.Key.Public},
		AppKey:     c.Apps[0].AppKey, Account: account, Token: token,
		DeviceType: "phone", DeviceID: account + "-" + hex.EncodeToString(b[:]),
	}
}
