package clustertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/longlink/longlink/core/link"
	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/tools/wanemu/wan"
)

// SitesOptions shape a two-site deployment.
type SitesOptions struct {
	// Delay is the one-way delay between any two sites (the WAN
	// emulator's links; the round trip is twice it). Default 1ms.
	Delay time.Duration
	// NATSNodes is the size of each site's NATS cluster. Default 3.
	NATSNodes int
	// Gateways and Services are the core processes per site. Default 1 and 1.
	Gateways, Services int
	// Gateway and Service are merged into every such process's options
	// (the site and its label are set).
	Gateway, Service CoreOptions
	// Async makes the standby asynchronous (a commit does not wait for
	// the other site): the baseline of the synchronous standby's cost.
	Async bool
	// NoFsync turns PostgreSQL's fsync off.
	NoFsync bool
	// Apps are seeded by the service nodes. Default: one app "demo".
	Apps []App
	// CPUs, when set, pins every process of the sites to these CPUs
	// (taskset -c CPUs): benchmarks keep their load generators off them.
	CPUs string
	// PGSettings are extra postgresql.conf lines for both servers.
	PGSettings []string
}

// Sites is a deployment over two sites, a and b, in network namespaces
// joined by the WAN emulator (with a third, w, holding only the JetStream
// tie-breaker):
//
//   - each site runs a NATS cluster of its own, without JetStream, and the
//     site clusters join one super-cluster through gateways, so that queue
//     groups answer in the requester's cluster while it has members and in
//     another cluster when it has none;
//   - JetStream runs in a third cluster of the super-cluster, "js",
//     stretched over the sites: one server in a, one in b, one in w. Every
//     stream and bucket the core creates is placed there (its only
//     JetStream servers) with three replicas, one per site, so an ack
//     means two sites have the message, and any two sites form a quorum
//     (for the streams and the meta group);
//   - PostgreSQL has its primary in a and a synchronous standby in b;
//   - each site has its gateway and service `longlink core` processes,
//     labelled with the site, connected to their site's NATS cluster and to
//     the store by a connection string that lists both servers and asks
//     for the writable one.
//
// The test process reaches every site directly (a veth per site, not
// emulated); the sites reach each other only through the emulator, whose
// links Cut partitions.
type Sites struct {
	Env   *Env
	World *wan.World
	// A, B and W are the sites (W: the witness).
	A, B, W *Site
	// SiteA and SiteB are each site's deployment: its NATS cluster and its
	// core processes (AddGateway, AddService, Users, SDKConfig work on
	// them); PG and the key are shared.
	SiteA, SiteB *Cluster
	// JS is the stretched JetStream cluster.
	JS *NATS
	PG *Postgres
}

var worldSeq atomic.Int64

// StartNet creates one network namespace per name, joined pairwise by the
// WAN emulator with delay one way, and reachable from the test's own
// namespace by a veth each. The namespaces are removed after every
// process stopped.
func (e *Env) StartNet(delay time.Duration, names ...string) (*wan.World, []*Site) {
	e.t.Helper()
	if err := wan.Unsupported(); err != nil {
		e.t.Fatalf("clustertest: sites need network namespaces: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var lastErr error
	for range 5 {
		w, sites, err := e.startNet(ctx, delay, names)
		if err == nil {
			return w, sites
		}
		lastErr = err
	}
	e.t.Fatalf("clustertest: network: %v", lastErr)
	return nil, nil
}

func (e *Env) startNet(ctx context.Context, delay time.Duration, names []string) (*wan.World, []*Site, error) {
	// A random subnet: other tests' worlds may run at the same time, and
	// the test's namespace gets routes to this one's addresses.
	b1, b2 := 64+mrand.IntN(128), mrand.IntN(256)
	cfg := wan.Default()
	cfg.Name = fmt.Sprintf("sites%d", worldSeq.Add(1))
	cfg.Subnet = fmt.Sprintf("10.%d.%d.0/24", b1, b2)
	for _, n := range names {
		cfg.Nodes = append(cfg.Nodes, wan.NodeConfig{Name: n})
	}
	for i := range names {
		for j := i + 1; j < len(names); j++ {
			cfg.Links = append(cfg.Links, wan.LinkConfig{A: names[i], B: names[j], Both: wan.Impairment{Delay: config.Duration(delay)}})
		}
	}
	w, err := wan.New(cfg, wan.Deps{})
	if err != nil {
		return nil, nil, err
	}
	if err := w.Start(ctx); err != nil {
		return nil, nil, err
	}
	var veths []string
	undo := func() {
		for _, v := range veths {
			_ = exec.Command("ip", "link", "del", v).Run()
		}
		_ = w.Shutdown(context.Background())
	}
	var sites []*Site
	var tag [3]byte
	_, _ = rand.Read(tag[:])
	for i, n := range names {
		ns := w.Namespace(n)
		addr := w.Addr(n)
		// The test's side 172.(16+b)/30 per site; the site answers over it.
		base := netip.AddrFrom4([4]byte{172, byte(16 + mrand.IntN(16)), byte(mrand.IntN(256)), byte(4 * mrand.IntN(64))})
		here, there := base.Next(), base.Next().Next()
		veth := fmt.Sprintf("lls%s%d", hex.EncodeToString(tag[:]), i)
		for _, args := range [][]string{
			{"link", "add", veth, "type", "veth", "peer", "name", "site0", "netns", ns},
			{"addr", "add", here.String() + "/30", "dev", veth},
			{"link", "set", veth, "up"},
			{"-n", ns, "addr", "add", there.String() + "/30", "dev", "site0"},
			{"-n", ns, "link", "set", "site0", "up"},
			{"route", "add", addr.String() + "/32", "via", there.String()},
		} {
			if out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput(); err != nil {
				undo()
				return nil, nil, fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
			}
			if args[0] == "link" && args[1] == "add" {
				veths = append(veths, veth)
			}
		}
		sites = append(sites, &Site{Name: n, Host: addr.String(), Exec: []string{"ip", "netns", "exec", ns}})
	}
	e.mu.Lock()
	e.atEnd = append(e.atEnd, undo)
	e.mu.Unlock()
	return w, sites, nil
}

// StartSites starts the two-site deployment and waits until every process
// is ready.
func StartSites(t testing.TB, o SitesOptions) *Sites {
	t.Helper()
	e := New(t)
	if o.Delay == 0 {
		o.Delay = time.Millisecond
	}
	if o.NATSNodes == 0 {
		o.NATSNodes = 3
	}
	if o.Gateways == 0 {
		o.Gateways = 1
	}
	if o.Services == 0 {
		o.Services = 1
	}
	if len(o.Apps) == 0 {
		var b [12]byte
		_, _ = rand.Read(b[:])
		o.Apps = []App{{AppKey: "demo", Secret: hex.EncodeToString(b[:])}}
	}
	s := &Sites{Env: e}
	var sites []*Site
	s.World, sites = e.StartNet(o.Delay, "a", "b", "w")
	s.A, s.B, s.W = sites[0], sites[1], sites[2]
	if o.CPUs != "" {
		for _, st := range sites {
			st.Exec = append([]string{"taskset", "-c", o.CPUs}, st.Exec...)
		}
	}
	ns := e.StartSuperCluster(
		NATSOptions{Site: s.A, Name: "a", Nodes: o.NATSNodes, NoJetStream: true},
		NATSOptions{Site: s.B, Name: "b", Nodes: o.NATSNodes, NoJetStream: true},
		NATSOptions{Site: s.A, Sites: []*Site{s.A, s.B, s.W}, Name: "js", Nodes: 3},
	)
	s.JS = ns[2]
	// A standby whose primary went away retries its WAL source every
	// wal_retrieve_retry_interval (5 s by default); a promotion meanwhile
	// waits for the retry.
	s.PG = e.StartPostgres(PGOptions{Site: s.A, StandbySite: s.B, Standby: true, Synchronous: !o.Async, NoFsync: o.NoFsync,
		Settings: append([]string{"wal_retrieve_retry_interval = 200ms"}, o.PGSettings...)})
	key, err := link.GenerateKey("k1")
	if err != nil {
		t.Fatal(err)
	}
	site := func(st *Site, n *NATS) *Cluster {
		c := &Cluster{Env: e, NATS: n, PG: s.PG, Key: key, Apps: o.Apps, prefix: st.Name + "-", next: map[string]int{}}
		for _, x := range []struct {
			dst *CoreOptions
			src CoreOptions
		}{{&c.opts.Gateway, o.Gateway}, {&c.opts.Service, o.Service}} {
			cfg := map[string]any{"site": st.Name}
			merge(cfg, x.src.Config)
			*x.dst = CoreOptions{Site: st, Config: cfg, LogLevel: x.src.LogLevel}
		}
		return c
	}
	s.SiteA, s.SiteB = site(s.A, ns[0]), site(s.B, ns[1])
	// The first service node runs the migrations.
	var svcs, gws []*Core
	for i := range o.Services {
		for _, c := range []*Cluster{s.SiteA, s.SiteB} {
			core := c.prepare(true, CoreOptions{})
			if i == 0 && c == s.SiteA {
				c.start([]*Core{core})
				continue
			}
			svcs = append(svcs, core)
		}
	}
	for range o.Gateways {
		for _, c := range []*Cluster{s.SiteA, s.SiteB} {
			gws = append(gws, c.prepare(false, CoreOptions{}))
		}
	}
	s.SiteA.start(svcs)
	s.SiteA.start(gws)
	return s
}

// Cut partitions the sites x and y (cut false heals): their packets are
// dropped silently both ways.
func (s *Sites) Cut(x, y *Site, cut bool) error {
	return s.World.Cut(x.Name, y.Name, cut)
}

// Kill SIGKILLs every process running at site at once, their children too
// (PostgreSQL's backends and WAL sender would otherwise outlive their
// postmaster for a moment): its data centre lost power. It waits until
// they are gone.
func (s *Sites) Kill(site *Site) error {
	var procs []*Proc
	for _, p := range s.Env.Procs() {
		if p.Site == site && p.Running() {
			procs = append(procs, p)
		}
	}
	var children []int
	for _, p := range procs {
		children = append(children, descendants(p.Pid())...)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(procs))
	for _, pid := range children {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	for i, p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = p.Kill()
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
