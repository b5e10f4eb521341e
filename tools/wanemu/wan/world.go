// Package wan is a WAN emulator in user space. It builds a "world" of network
// namespaces, gives each one a TUN device on a private subnet, and carries the
// IP packets between them in this process, applying per link and per
// direction: delay, jitter, random and Gilbert-Elliott loss, a bandwidth limit
// with a tail-dropping queue, and reordering. Programs run inside the
// namespaces (World.Command, World.Do) and talk over plain sockets, so the
// kernel's own TCP meets the loss and delay, as it would on a real long path.
//
// A UDPProxy applies the same impairments to datagrams between two loopback
// ports, for tests that can't be root.
package wan

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/longlink/longlink/pkg/logging"
	"github.com/longlink/longlink/tools/wanemu/wan/internal/netns"
	"github.com/longlink/longlink/tools/wanemu/wan/internal/packet"
)

// Device is the name of the TUN device inside every node's namespace.
const Device = "wan0"

// maxInFlight bounds one direction's delay line so that an unlimited link fed
// faster than it drains cannot eat all memory.
const maxInFlight = 1 << 17

// Deps are the world's injected dependencies.
type Deps struct {
	Logger     *slog.Logger
	Registerer prometheus.Registerer // nil: metrics are kept but not exported
}

// ErrUnsupported is returned by Start when the host cannot run a world (not
// root, no /dev/net/tun, no iproute2); tests skip on it.
var ErrUnsupported = errors.New("wan: emulator unsupported here")

// Unsupported reports why a world cannot run on this host, or nil.
func Unsupported() error {
	if err := netns.Supported(); err != nil {
		return fmt.Errorf("%w: %w", ErrUnsupported, err)
	}
	return nil
}

// World is a running emulated network. Create it with New, then Start; always
// Shutdown, which deletes the namespaces.
type World struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	subnet  netip.Prefix

	nodes  []*node
	byName map[string]*node
	byAddr map[netip.Addr]*node
	dirs   map[[2]int]*direction

	stop chan struct{}
	wg   sync.WaitGroup
	pool sync.Pool

	spawner *netns.Spawner

	mu       sync.Mutex
	started  bool
	shutdown bool
	created  []string // namespaces created, for teardown
	cmds     []*exec.Cmd
}

type node struct {
	idx  int
	name string
	ns   string
	addr netip.Addr
	tun  *netns.Tun
}

// New validates cfg and prepares a world; nothing is created until Start.
func New(cfg Config, deps Deps) (*World, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("wan: %w", err)
	}
	log := logging.OrDiscard(deps.Logger)
	w := &World{
		cfg:     cfg,
		log:     log.With("component", "wanemu", "world", cfg.Name),
		metrics: newMetrics(deps.Registerer),
		subnet:  netip.MustParsePrefix(cfg.Subnet),
		byName:  map[string]*node{},
		byAddr:  map[netip.Addr]*node{},
		dirs:    map[[2]int]*direction{},
		stop:    make(chan struct{}),
	}
	bufSize := cfg.MTU + 64
	w.pool.New = func() any { b := make([]byte, bufSize); return &b }
	pid := os.Getpid()
	for i, nc := range cfg.Nodes {
		a, _ := nodeAddr(w.subnet, i, nc.Address) // checked by Validate
		n := &node{idx: i, name: nc.Name, ns: netns.Name(pid, cfg.Name, nc.Name), addr: a}
		w.nodes = append(w.nodes, n)
		w.byName[n.name] = n
		w.byAddr[a] = n
	}
	for _, lc := range cfg.Links {
		a, b := w.byName[lc.A], w.byName[lc.B]
		ab, ba := lc.Both, lc.Both
		if lc.AToB != nil {
			ab = *lc.AToB
		}
		if lc.BToA != nil {
			ba = *lc.BToA
		}
		w.dirs[[2]int{a.idx, b.idx}] = w.newDirection(a, b, ab)
		w.dirs[[2]int{b.idx, a.idx}] = w.newDirection(b, a, ba)
	}
	return w, nil
}

func (w *World) newDirection(from, to *node, im Impairment) *direction {
	return newDirection(from.name+">"+to.name, im, w.cfg.Seed, w.metrics, &w.pool, w.stop)
}

// CleanStale deletes the namespaces left behind by emulator processes that
// died without tearing down (their owner pid no longer exists). Namespaces of
// live runs are left alone. It returns the names it deleted.
func CleanStale(ctx context.Context) ([]string, error) {
	stale, err := netns.Stale()
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, n := range stale {
		if err := netns.Delete(ctx, n); err != nil {
			errs = append(errs, err)
		}
	}
	return stale, errors.Join(errs...)
}

// Start cleans up stale namespaces, creates the world's namespaces and TUN
// devices, and starts carrying packets. On failure everything it created is
// removed again.
func (w *World) Start(ctx context.Context) (err error) {
	if err := Unsupported(); err != nil {
		return err
	}
	w.mu.Lock()
	if w.started {
		w.mu.Unlock()
		return errors.New("wan: world already started")
	}
	w.started = true
	w.spawner = netns.NewSpawner()
	w.mu.Unlock()
	if removed, err := CleanStale(ctx); err != nil {
		w.log.Warn("cleaning stale namespaces", "err", err)
	} else if len(removed) > 0 {
		w.log.Info("removed stale namespaces", "names", removed)
	}
	defer func() {
		if err != nil {
			_ = w.Shutdown(context.WithoutCancel(ctx))
		}
	}()
	bits := strconv.Itoa(w.subnet.Bits())
	for _, n := range w.nodes {
		if err := netns.Add(ctx, n.ns); err != nil {
			return fmt.Errorf("wan: node %s: %w", n.name, err)
		}
		w.mu.Lock()
		w.created = append(w.created, n.ns)
		w.mu.Unlock()
		if err := netns.IP(ctx, "-n", n.ns, "link", "set", "lo", "up"); err != nil {
			return fmt.Errorf("wan: node %s: %w", n.name, err)
		}
		// Only IPv4 is emulated; without IPv6 the devices stay quiet.
		_ = netns.Do(n.ns, func() error {
			return os.WriteFile("/proc/sys/net/ipv6/conf/all/disable_ipv6", []byte("1"), 0)
		})
		if err := w.applySysctl(n); err != nil {
			return fmt.Errorf("wan: node %s: %w", n.name, err)
		}
		tun, err := netns.OpenTun(n.ns, Device)
		if err != nil {
			return fmt.Errorf("wan: node %s: %w", n.name, err)
		}
		n.tun = tun
		if err := netns.IP(ctx, "-n", n.ns, "addr", "add", n.addr.String()+"/"+bits, "dev", Device); err != nil {
			return fmt.Errorf("wan: node %s: %w", n.name, err)
		}
		if err := netns.IP(ctx, "-n", n.ns, "link", "set", Device, "mtu", strconv.Itoa(w.cfg.MTU), "up"); err != nil {
			return fmt.Errorf("wan: node %s: %w", n.name, err)
		}
		if d := w.cfg.Nodes[n.idx].RTOMin.D(); d > 0 {
			if err := netns.IP(ctx, "-n", n.ns, "route", "replace", w.subnet.Masked().String(), "dev", Device,
				"src", n.addr.String(), "rto_min", strconv.FormatInt(d.Milliseconds(), 10)+"ms"); err != nil {
				return fmt.Errorf("wan: node %s: %w", n.name, err)
			}
		}
	}
	for _, d := range w.dirs {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			d.run()
		}()
	}
	for _, n := range w.nodes {
		w.wg.Add(1)
		go w.read(n)
	}
	w.log.Info("world up", "nodes", len(w.nodes), "links", len(w.cfg.Links))
	return nil
}

// applySysctl writes the world's and the node's net.* settings inside the
// node's namespace (/proc/sys/net is per namespace, seen from the thread).
func (w *World) applySysctl(n *node) error {
	settings := map[string]string{}
	for k, v := range w.cfg.Sysctl {
		settings[k] = v
	}
	for k, v := range w.cfg.Nodes[n.idx].Sysctl {
		settings[k] = v
	}
	if len(settings) == 0 {
		return nil
	}
	return netns.Do(n.ns, func() error {
		for k, v := range settings {
			path := "/proc/sys/" + strings.ReplaceAll(k, ".", "/")
			if err := os.WriteFile(path, []byte(v), 0); err != nil {
				if k == "net.ipv4.tcp_congestion_control" && errors.Is(err, os.ErrPermission) {
					err = fmt.Errorf("%w (a namespace may only choose from the host's net.ipv4.tcp_allowed_congestion_control)", err)
				}
				return fmt.Errorf("sysctl %s=%s: %w", k, v, err)
			}
		}
		return nil
	})
}

// Shutdown kills the commands started with Command that still run, stops
// carrying packets and deletes the namespaces. It is idempotent.
func (w *World) Shutdown(ctx context.Context) error {
	w.mu.Lock()
	if w.shutdown {
		w.mu.Unlock()
		return nil
	}
	w.shutdown = true
	cmds := w.cmds
	created := w.created
	w.mu.Unlock()

	for _, c := range cmds {
		if c.Process != nil {
			// The group may already be gone; ESRCH is fine.
			_ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
		}
	}
	if w.spawner != nil {
		w.spawner.Close()
	}
	close(w.stop)
	for _, n := range w.nodes {
		if n.tun != nil {
			n.tun.Close()
		}
	}
	w.wg.Wait()
	var errs []error
	for _, ns := range created {
		if err := netns.Delete(context.WithoutCancel(ctx), ns); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		w.log.Info("world down")
	}
	return errors.Join(errs...)
}

// Nodes returns the node names in configuration order.
func (w *World) Nodes() []string {
	names := make([]string, len(w.nodes))
	for i, n := range w.nodes {
		names[i] = n.name
	}
	return names
}

// Addr returns the node's address; the zero Addr for an unknown node.
func (w *World) Addr(nodeName string) netip.Addr {
	if n := w.byName[nodeName]; n != nil {
		return n.addr
	}
	return netip.Addr{}
}

// Namespace returns the name of the node's network namespace, for `ip netns
// exec` or `ip -n`.
func (w *World) Namespace(nodeName string) string {
	if n := w.byName[nodeName]; n != nil {
		return n.ns
	}
	return ""
}

// Command returns a command that runs name with args inside the node's
// namespace (`ip netns exec`). It runs in its own process group; Shutdown
// kills the group if it is still running. Start it with Spawn (rather than
// cmd.Start) so that it is also killed if this process dies without a
// Shutdown.
func (w *World) Command(ctx context.Context, nodeName, name string, args ...string) (*exec.Cmd, error) {
	n := w.byName[nodeName]
	if n == nil {
		return nil, fmt.Errorf("wan: no node %q", nodeName)
	}
	cmd := netns.Command(ctx, n.ns, append([]string{name}, args...)...)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.shutdown {
		return nil, errors.New("wan: world shut down")
	}
	w.cmds = append(w.cmds, cmd)
	return cmd, nil
}

// Spawn starts a command made by Command from the world's spawner thread,
// with SIGKILL as its parent-death signal: if this process dies, even by
// SIGKILL, the kernel kills the command too.
func (w *World) Spawn(cmd *exec.Cmd) error {
	w.mu.Lock()
	sp, down := w.spawner, w.shutdown
	w.mu.Unlock()
	if sp == nil || down {
		return errors.New("wan: world not running")
	}
	return sp.Start(cmd)
}

// Do runs fn on a thread inside the node's namespace. Sockets fn creates (for
// example with net.Listen or net.Dial) belong to that namespace for life and
// can be used from any goroutine afterwards.
func (w *World) Do(nodeName string, fn func() error) error {
	n := w.byName[nodeName]
	if n == nil {
		return fmt.Errorf("wan: no node %q", nodeName)
	}
	return netns.Do(n.ns, fn)
}

// Stats returns the counters of the direction from → to.
func (w *World) Stats(from, to string) (DirectionStats, bool) {
	a, b := w.byName[from], w.byName[to]
	if a == nil || b == nil {
		return DirectionStats{}, false
	}
	d := w.dirs[[2]int{a.idx, b.idx}]
	if d == nil {
		return DirectionStats{}, false
	}
	return d.Stats(), true
}

// read carries the packets n's kernel sends into its TUN device.
func (w *World) read(n *node) {
	defer w.wg.Done()
	var lastErrLog time.Time
	for {
		bp := w.pool.Get().(*[]byte)
		buf := *bp
		k, err := n.tun.Read(buf)
		if err != nil {
			w.pool.Put(bp)
			select {
			case <-w.stop:
				return
			default:
			}
			if errors.Is(err, os.ErrClosed) {
				return
			}
			if time.Since(lastErrLog) > time.Second {
				lastErrLog = time.Now()
				w.log.Warn("reading TUN", "node", n.name, "err", err)
			}
			time.Sleep(time.Millisecond) // a persistent error must not spin a core
			continue
		}
		h, err := packet.Parse(buf[:k])
		if err != nil {
			reason := "malformed"
			if errors.Is(err, packet.ErrNotIPv4) {
				reason = "not_ipv4"
			}
			w.metrics.dropped.WithLabelValues(n.name, reason).Inc()
			w.pool.Put(bp)
			continue
		}
		to := w.byAddr[h.Dst]
		if to == nil {
			w.metrics.dropped.WithLabelValues(n.name, "no_route").Inc()
			w.pool.Put(bp)
			continue
		}
		d := w.dirs[[2]int{n.idx, to.idx}]
		if d == nil {
			w.metrics.dropped.WithLabelValues(n.name, "no_link").Inc()
			w.pool.Put(bp)
			continue
		}
		if d.cut.Load() {
			w.metrics.dropped.WithLabelValues(n.name, "cut").Inc()
			w.pool.Put(bp)
			continue
		}
		d.admit(bp, h.Length, to.tun)
	}
}

// Cut cuts (cut true) or heals the link between nodes a and b, both ways,
// while the world runs: packets sent meanwhile are dropped silently (counted
// as unrouted, reason cut), as on a partition; connections see no reset.
func (w *World) Cut(a, b string, cut bool) error {
	na, nb := w.byName[a], w.byName[b]
	if na == nil || nb == nil {
		return fmt.Errorf("wan: no node %q or %q", a, b)
	}
	for _, k := range [][2]int{{na.idx, nb.idx}, {nb.idx, na.idx}} {
		d := w.dirs[k]
		if d == nil {
			return fmt.Errorf("wan: no link %s-%s", a, b)
		}
		d.cut.Store(cut)
	}
	return nil
}
