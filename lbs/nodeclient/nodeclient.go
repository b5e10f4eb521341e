// Package nodeclient is what edges and core gateways use to report to the
// LBS: a heartbeat loop with their load (rotating over the LBS members when
// one fails) and a drain on shutdown, so that clients are sent elsewhere
// before the node stops. With Deps.OnTurnSecrets set it also keeps the
// node's TURN shared secrets in step with the LBS (rotation).
//
//	nc, _ := nodeclient.New(nodeclient.Config{Servers: []string{"https://127.0.0.1:7701"},
//		Node: "edge-sg-1", Token: tok, RootCAs: pool}, nodeclient.Deps{Load: func() nodeclient.Load {…}})
//	nc.Start(ctx) … nc.Shutdown(ctx) // drains first
package nodeclient

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/longlink/longlink/lbs/lbsapi"
	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/pkg/logging"
	"github.com/longlink/longlink/pkg/turncred"
)

// Config of a reporting node.
type Config struct {
	// Servers are LBS admin URLs (https://host:7701).
	Servers []string `yaml:"servers"`
	// Node is this node's entry point id in the routing policy.
	Node string `yaml:"node"`
	// Token is a node token (bound to Node, or the cluster's shared one).
	Token config.Secret `yaml:"token"`
	// CAFile is the LBS cluster CA (PEM); empty uses RootCAs or the system pool.
	CAFile string `yaml:"ca_file"`
	// Interval between heartbeats; the LBS's reply overrides it. 0 means 1s.
	Interval config.Duration `yaml:"interval"`
	// Capacity in sessions, reported with each beat (0: the policy's).
	Capacity int `yaml:"capacity"`
	// Labels are reported with each beat and shown in the operators'
	// console (site, zone, …).
	Labels map[string]string `yaml:"labels"`
	// Version is the software version reported with each beat; main sets
	// it from the binary's build.
	Version string `yaml:"-"`
	// RootCAs overrides CAFile (in-process use).
	RootCAs *x509.CertPool `yaml:"-"`
}

// WithSite returns the configuration with the label "site" set to site,
// unless site is "" or Labels already sets one (the node's site label, as
// the LBS console and GET /v1/sites group by it).
func (c Config) WithSite(site string) Config {
	if site == "" || c.Labels["site"] != "" {
		return c
	}
	labels := map[string]string{"site": site}
	for k, v := range c.Labels {
		labels[k] = v
	}
	c.Labels = labels
	return c
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	var errs config.Errors
	if len(c.Servers) == 0 {
		errs.Addf("servers: at least one LBS admin URL")
	}
	for i, s := range c.Servers {
		if !strings.HasPrefix(s, "https://") {
			errs.Addf("servers[%d]: %q is not an https URL", i, s)
		}
	}
	if c.Node == "" {
		errs.Addf("node: required")
	}
	if c.Token.Reveal() == "" {
		errs.Addf("token: required")
	}
	return errs.Err()
}

// Load is what the node reports.
type Load struct {
	Connections int
	// ConnRate: client connections accepted per second since the last
	// sample (an edge's attack signal).
	ConnRate float64
	CPU      float64 // 0..1
	// Paths are the node's next hops with their measured quality.
	Paths []lbsapi.Path
}

// Deps are the client's dependencies.
type Deps struct {
	Logger *slog.Logger
	// Load samples the node's load for each heartbeat. nil reports zero.
	Load       func() Load
	HTTPClient *http.Client // nil: one with the configured CA
	// OnTurnSecrets, when set, makes the client fetch the live TURN shared
	// secrets (GET /v1/turn-secrets) after every heartbeat and call it with
	// the set, first one current, whenever it differs from the last one
	// handed over (rotation). An empty set on the LBS is never passed on:
	// the node keeps its working set (see syncTurnSecrets). It is called
	// from the heartbeat goroutine, never concurrently with itself; an error
	// is logged (without secret values) and the set is not retried until it
	// changes. edge/turn.Server.SetSecrets and core/callsvc.Service.SetSecrets
	// fit it.
	OnTurnSecrets func([]turncred.Secret) error
	// OnUplinks, when set, is called from the heartbeat goroutine with the
	// edge's relay topology (lbsapi.Uplinks: relays and core egresses with
	// their tunnel addresses) from the heartbeat reply whenever it differs
	// from the last one handed over. A reply without uplinks (the policy
	// has no topology entry for this node) is not passed on: the node keeps
	// its routes. An error is logged and the same uplinks are not retried.
	OnUplinks func(lbsapi.Uplinks) error
	// Routing, when set, is sampled for each heartbeat: a core gateway's
	// appkey → cluster map and the service nodes it hears on the bus, for
	// the LBS's explain.
	Routing func() Routing
	// OnGrayscale, when set, is called from the heartbeat goroutine with
	// the policy's grayscale rules whenever they differ from the last ones
	// handed over (an empty list too: that is a rollback). An error is
	// logged and the same rules are not retried.
	OnGrayscale func(lbsapi.Grayscale) error
	// OnDrained, when set, is called from the heartbeat goroutine whenever
	// an operator's drain of this node (ctl drain, ctl site drain) starts
	// (true) or ends (false), as the LBS's replies say. A node's own drain
	// on shutdown is not reported here.
	OnDrained func(drained bool)
}

// Routing is what a gateway reports of its request routing. Clusters maps
// appkeys to dedicated clusters, with "*" for the default cluster.
type Routing struct {
	Clusters     map[string]string
	ServiceNodes []lbsapi.ServiceNode
}

// Client reports one node.
type Client struct {
	cfg      Config
	deps     Deps
	log      *slog.Logger
	hc       *http.Client
	next     atomic.Int64
	interval atomic.Int64
	state    atomic.Value // string
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	once     sync.Once

	// TURN secret sync state, owned by the heartbeat goroutine
	turnSum         [sha256.Size]byte
	turnHave        bool
	turnEmptyWarned bool
	turnUpdates     atomic.Int64
	uplinksLast     []byte // JSON of the uplinks last handed over
	uplinkUpdates   atomic.Int64
	grayLast        []byte // JSON of the grayscale rules last handed over
	drained         bool   // the operator drain last handed to OnDrained
}

// ErrAllServersFailed is returned when no LBS member accepted a report.
var ErrAllServersFailed = errors.New("nodeclient: no LBS member accepted the report")

// New builds a client.
func New(cfg Config, deps Deps) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("nodeclient: %w", err)
	}
	if cfg.Interval <= 0 {
		cfg.Interval = config.Duration(time.Second)
	}
	deps.Logger = logging.OrDiscard(deps.Logger)
	c := &Client{cfg: cfg, deps: deps, log: deps.Logger.With("component", "nodeclient", "node", cfg.Node), hc: deps.HTTPClient}
	if c.hc == nil {
		pool := cfg.RootCAs
		if pool == nil && cfg.CAFile != "" {
			var err error
			if pool, err = loadPool(cfg.CAFile); err != nil {
				return nil, err
			}
		}
		c.hc = &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, MaxIdleConnsPerHost: 2}}
	}
	c.interval.Store(int64(cfg.Interval.D()))
	c.state.Store("")
	return c, nil
}

// Start begins heartbeating (the first beat is sent at once).
func (c *Client) Start(ctx context.Context) error {
	ctx, c.cancel = context.WithCancel(context.WithoutCancel(ctx))
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		for {
			r, err := c.report(ctx, lbsapi.PathHeartbeat, false)
			if err != nil && ctx.Err() == nil {
				c.log.Warn("heartbeat failed", "err", err)
			}
			if err == nil && r.Uplinks != nil && c.deps.OnUplinks != nil {
				c.syncUplinks(*r.Uplinks)
			}
			if err == nil && r.Grayscale != nil && c.deps.OnGrayscale != nil {
				c.syncGrayscale(*r.Grayscale)
			}
			if err == nil && c.deps.OnDrained != nil && r.Drained != c.drained {
				c.drained = r.Drained
				c.log.Info("operator drain from the LBS", "drained", r.Drained)
				c.deps.OnDrained(r.Drained)
			}
			if c.deps.OnTurnSecrets != nil && ctx.Err() == nil {
				if err := c.syncTurnSecrets(ctx); err != nil && ctx.Err() == nil {
					c.log.Warn("fetching TURN secrets failed; keeping the current set", "err", err)
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Duration(c.interval.Load())):
			}
		}
	}()
	return nil
}

// State is the node's committed health as the LBS last reported it.
func (c *Client) State() string { return c.state.Load().(string) }

// Drain tells the LBS to stop sending clients here (committed before it
// returns). Heartbeats keep going, marked draining.
func (c *Client) Drain(ctx context.Context) error {
	_, err := c.report(ctx, lbsapi.PathNodeDrain, true)
	return err
}

// syncUplinks hands u to Deps.OnUplinks when it changed.
func (c *Client) syncUplinks(u lbsapi.Uplinks) {
	b, _ := json.Marshal(&u)
	if c.uplinksLast != nil && bytes.Equal(b, c.uplinksLast) {
		return
	}
	c.uplinksLast = b
	if err := c.deps.OnUplinks(u); err != nil {
		c.log.Warn("uplinks from the LBS refused", "uplinks", string(b), "err", err)
		return
	}
	c.uplinkUpdates.Add(1)
	c.log.Info("uplinks updated from the LBS", "uplinks", string(b))
}

// syncGrayscale hands g to Deps.OnGrayscale when its rules changed (a new
// policy version with the same rules changes nothing).
func (c *Client) syncGrayscale(g lbsapi.Grayscale) {
	b, _ := json.Marshal(g.Rules)
	if c.grayLast != nil && bytes.Equal(b, c.grayLast) {
		return
	}
	c.grayLast = b
	if err := c.deps.OnGrayscale(g); err != nil {
		c.log.Warn("grayscale rules from the LBS refused", "policy_version", g.PolicyVersion, "err", err)
		return
	}
	c.log.Info("grayscale rules updated from the LBS", "policy_version", g.PolicyVersion, "rules", len(g.Rules))
}

// UplinkUpdates is how many times changed uplinks from the LBS were handed
// to Deps.OnUplinks and accepted.
func (c *Client) UplinkUpdates() int64 { return c.uplinkUpdates.Load() }

// Shutdown drains, then stops heartbeating. Idempotent.
func (c *Client) Shutdown(ctx context.Context) error {
	var err error
	c.once.Do(func() {
		err = c.Drain(ctx)
		if c.cancel != nil {
			c.cancel()
		}
		c.wg.Wait()
	})
	return err
}

func (c *Client) report(ctx context.Context, path string, draining bool) (lbsapi.HeartbeatReply, error) {
	hb := lbsapi.Heartbeat{Node: c.cfg.Node, Capacity: c.cfg.Capacity, Draining: draining, Version: c.cfg.Version, Labels: c.cfg.Labels}
	if c.deps.Load != nil {
		l := c.deps.Load()
		hb.Connections, hb.CPU, hb.Paths, hb.ConnRate = l.Connections, l.CPU, l.Paths, l.ConnRate
	}
	if c.deps.Routing != nil {
		r := c.deps.Routing()
		hb.Clusters, hb.ServiceNodes = r.Clusters, r.ServiceNodes
	}
	body, _ := json.Marshal(&hb)
	var last error
	n := len(c.cfg.Servers)
	for i := range n {
		idx := int((c.next.Load() + int64(i)) % int64(n))
		r, err := c.post(ctx, c.cfg.Servers[idx]+path, body)
		if err == nil {
			c.next.Store(int64(idx)) // stick to the member that answers
			return r, nil
		}
		last = err
		if ctx.Err() != nil {
			break
		}
	}
	return lbsapi.HeartbeatReply{}, fmt.Errorf("%w: %v", ErrAllServersFailed, last)
}

func (c *Client) post(ctx context.Context, url string, body []byte) (lbsapi.HeartbeatReply, error) {
	var r lbsapi.HeartbeatReply
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return r, err
	}
	req.Header.Set("Authorization", "Bearer "+c.cfg.Token.Reveal())
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return r, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return r, fmt.Errorf("%s: %s: %s", url, resp.Status, strings.TrimSpace(string(b)))
	}
	if err := json.Unmarshal(b, &r); err == nil {
		if r.IntervalMs > 0 {
			c.interval.Store(int64(time.Duration(r.IntervalMs) * time.Millisecond))
		}
		c.state.Store(r.State)
	} else {
		r = lbsapi.HeartbeatReply{}
	}
	return r, nil
}
