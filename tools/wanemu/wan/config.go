package wan

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/tools/wanemu/wan/internal/impair"
)

// Config describes a world: named network namespaces ("nodes") on one private
// subnet, and the links between them with their impairments. A packet can only
// travel between two nodes joined by a link; there is no forwarding through a
// third node (put a program there, such as an edge, to relay).
type Config struct {
	// Name identifies the world in namespace names (llw-<pid>-<name>-<node>).
	// Letters, digits and '_' only; default "world".
	Name string `yaml:"name"`
	// Subnet holds every node's address. It is only ever configured inside
	// the namespaces the world creates. Default 10.99.0.0/24.
	Subnet string `yaml:"subnet"`
	// MTU of every node's TUN device. Default 1500.
	MTU int `yaml:"mtu"`
	// Seed makes the random choices (loss, jitter, reordering) repeatable;
	// each link direction derives its own stream from it. Default 1.
	Seed uint64 `yaml:"seed"`
	// Sysctl sets namespace-local kernel settings (keys under "net.") in
	// every node, e.g. net.ipv4.tcp_congestion_control: cubic. A new
	// namespace otherwise starts from the kernel's defaults.
	Sysctl map[string]string `yaml:"sysctl"`
	// Nodes are the namespaces.
	Nodes []NodeConfig `yaml:"nodes"`
	// Links join pairs of nodes.
	Links []LinkConfig `yaml:"links"`
}

// NodeConfig is one namespace.
type NodeConfig struct {
	// Name of the node, used in links and in World.Command; letters, digits
	// and '_' only.
	Name string `yaml:"name"`
	// Address inside Subnet. Default: the subnet's (index+1)th address.
	Address string `yaml:"address"`
	// Sysctl overrides the world's Sysctl for this node.
	Sysctl map[string]string `yaml:"sysctl"`
	// RTOMin, when set, lowers TCP's minimum retransmission timeout (200ms
	// by default in Linux) for this node's connections into the world, as a
	// tuned server would with `ip route ... rto_min`. Default: kernel's.
	RTOMin config.Duration `yaml:"rto_min"`
}

// LinkConfig joins nodes A and B. Both applies to each direction; AToB and BToA
// replace it for one direction when set.
type LinkConfig struct {
	A    string      `yaml:"a"`
	B    string      `yaml:"b"`
	Both Impairment  `yaml:"both"`
	AToB *Impairment `yaml:"a_to_b"`
	BToA *Impairment `yaml:"b_to_a"`
}

// Impairment is what one direction of a link does to packets, applied in this
// order: loss, bandwidth limit (token bucket, tail drop), delay and jitter,
// reordering. The zero value is a perfect link.
type Impairment struct {
	// Delay is the one-way delay; a link's round trip time is the sum of both
	// directions' delays.
	Delay config.Duration `yaml:"delay"`
	// Jitter spreads the delay uniformly over ±Jitter without reordering.
	Jitter config.Duration `yaml:"jitter"`
	// Loss is the probability [0,1] that a packet is dropped at random.
	Loss float64 `yaml:"loss"`
	// BurstLoss adds Gilbert-Elliott loss on top of Loss when set.
	BurstLoss *BurstLoss `yaml:"burst_loss"`
	// Rate limits the direction's bandwidth: "100mbit", "2gbit", "512kbit" or
	// a number of bits per second. Default unlimited.
	Rate Rate `yaml:"rate"`
	// Bucket is the token bucket's depth in bytes. Default 1500 (no burst
	// beyond one packet).
	Bucket int `yaml:"bucket"`
	// Queue is how many bytes may wait for the bandwidth limiter before new
	// packets are tail-dropped. Default: 100 ms worth of Rate, at least 64 KiB.
	Queue int `yaml:"queue"`
	// Reorder is the probability [0,1] that a packet is held back by
	// ReorderDelay so that later packets overtake it.
	Reorder float64 `yaml:"reorder"`
	// ReorderDelay is the extra hold time of a reordered packet. Default 5ms.
	ReorderDelay config.Duration `yaml:"reorder_delay"`
}

// BurstLoss is the Gilbert-Elliott model: per packet the path turns bad with
// probability P and good again with R; packets are lost with LossGood or
// LossBad depending on the state. With the defaults (LossGood 0, LossBad 1)
// loss bursts last 1/R packets on average and the mean loss is P/(P+R).
type BurstLoss struct {
	P        float64  `yaml:"p"`
	R        float64  `yaml:"r"`
	LossGood float64  `yaml:"loss_good"`
	LossBad  *float64 `yaml:"loss_bad"` // default 1
}

// Rate is a bandwidth in bits per second.
type Rate int64

var rateRE = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)\s*(bit|kbit|mbit|gbit)?$`)

// ParseRate parses "100mbit", "1.5gbit", "64kbit" or a plain number of bits/s.
func ParseRate(s string) (Rate, error) {
	m := rateRE.FindStringSubmatch(strings.ToLower(strings.TrimSpace(s)))
	if m == nil {
		return 0, fmt.Errorf("rate %q: want a number with bit, kbit, mbit or gbit", s)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, fmt.Errorf("rate %q: %w", s, err)
	}
	switch m[2] {
	case "kbit":
		v *= 1e3
	case "mbit":
		v *= 1e6
	case "gbit":
		v *= 1e9
	}
	// A float beyond int64 would convert to a negative rate.
	if v > maxRate {
		return 0, fmt.Errorf("rate %q: above %d gbit", s, int64(maxRate/1e9))
	}
	return Rate(v), nil
}

// maxRate bounds rates well inside int64 (1 Pbit/s is far beyond any link).
const maxRate = 1e15

// UnmarshalYAML accepts ParseRate's syntax.
func (r *Rate) UnmarshalYAML(unmarshal func(any) error) error {
	var raw string
	if err := unmarshal(&raw); err != nil {
		return err
	}
	v, err := ParseRate(raw)
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// MarshalYAML writes the rate in bits per second.
func (r Rate) MarshalYAML() (any, error) { return strconv.FormatInt(int64(r), 10), nil }

// String formats the rate for people.
func (r Rate) String() string {
	switch {
	case r == 0:
		return "unlimited"
	case r >= 1e9:
		return strconv.FormatFloat(float64(r)/1e9, 'g', -1, 64) + "gbit"
	case r >= 1e6:
		return strconv.FormatFloat(float64(r)/1e6, 'g', -1, 64) + "mbit"
	case r >= 1e3:
		return strconv.FormatFloat(float64(r)/1e3, 'g', -1, 64) + "kbit"
	}
	return strconv.FormatInt(int64(r), 10) + "bit"
}

// Default returns an empty world with the defaults filled in.
func Default() Config {
	return Config{Name: "world", Subnet: "10.99.0.0/24", MTU: 1500, Seed: 1}
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_]{1,24}$`)

// Validate checks the world and reports every problem at once.
func (c *Config) Validate() error {
	var errs config.Errors
	if !nameRE.MatchString(c.Name) {
		errs.Addf("name %q: 1-24 letters, digits or '_'", c.Name)
	}
	subnet, err := netip.ParsePrefix(c.Subnet)
	switch {
	case err != nil:
		errs.Addf("subnet: %v", err)
	case !subnet.Addr().Is4():
		errs.Addf("subnet %s: only IPv4 is emulated", c.Subnet)
	case !subnet.Addr().IsPrivate():
		errs.Addf("subnet %s: must be a private range (the world's traffic stays inside its namespaces)", c.Subnet)
	case subnet.Bits() > 30:
		errs.Addf("subnet %s: too small", c.Subnet)
	}
	if c.MTU < 576 || c.MTU > 65535 {
		errs.Addf("mtu %d: want 576..65535", c.MTU)
	}
	if len(c.Nodes) < 2 {
		errs.Addf("nodes: need at least two")
	}
	seen := map[string]bool{}
	addrs := map[netip.Addr]string{}
	for i, n := range c.Nodes {
		if !nameRE.MatchString(n.Name) {
			errs.Addf("nodes[%d].name %q: 1-24 letters, digits or '_'", i, n.Name)
		}
		if seen[n.Name] {
			errs.Addf("nodes[%d].name %q: duplicate", i, n.Name)
		}
		seen[n.Name] = true
		if n.RTOMin != 0 && (n.RTOMin.D() < time.Millisecond || n.RTOMin.D() > 10*time.Second) {
			errs.Addf("nodes[%d].rto_min %v: want 1ms..10s", i, n.RTOMin.D())
		}
		if err == nil && subnet.Addr().Is4() {
			a, aerr := nodeAddr(subnet, i, n.Address)
			switch {
			case aerr != nil:
				errs.Addf("nodes[%d].address: %v", i, aerr)
			case addrs[a] != "":
				errs.Addf("nodes[%d].address %s: also used by %s", i, a, addrs[a])
			default:
				addrs[a] = n.Name
			}
		}
	}
	validSysctl(&errs, "sysctl", c.Sysctl)
	for i, n := range c.Nodes {
		validSysctl(&errs, fmt.Sprintf("nodes[%d].sysctl", i), n.Sysctl)
	}
	pairs := map[[2]string]bool{}
	for i, l := range c.Links {
		if !seen[l.A] {
			errs.Addf("links[%d].a %q: no such node", i, l.A)
		}
		if !seen[l.B] {
			errs.Addf("links[%d].b %q: no such node", i, l.B)
		}
		if l.A == l.B {
			errs.Addf("links[%d]: joins %q to itself", i, l.A)
		}
		key := [2]string{min(l.A, l.B), max(l.A, l.B)}
		if pairs[key] {
			errs.Addf("links[%d]: %s and %s are already linked", i, l.A, l.B)
		}
		pairs[key] = true
		l.Both.validate(&errs, fmt.Sprintf("links[%d].both", i))
		if l.AToB != nil {
			l.AToB.validate(&errs, fmt.Sprintf("links[%d].a_to_b", i))
		}
		if l.BToA != nil {
			l.BToA.validate(&errs, fmt.Sprintf("links[%d].b_to_a", i))
		}
	}
	return errs.Err()
}

func (im *Impairment) validate(errs *config.Errors, path string) {
	prob := func(name string, v float64) {
		if v < 0 || v > 1 {
			errs.Addf("%s.%s %v: want a probability in [0,1]", path, name, v)
		}
	}
	prob("loss", im.Loss)
	prob("reorder", im.Reorder)
	if im.Delay < 0 || im.Jitter < 0 || im.ReorderDelay < 0 {
		errs.Addf("%s: delays must not be negative", path)
	}
	if im.Jitter > im.Delay {
		errs.Addf("%s.jitter %v: larger than delay %v", path, im.Jitter.D(), im.Delay.D())
	}
	if im.Rate < 0 || im.Bucket < 0 || im.Queue < 0 {
		errs.Addf("%s: rate, bucket and queue must not be negative", path)
	}
	if im.Rate == 0 && (im.Bucket != 0 || im.Queue != 0) {
		errs.Addf("%s: bucket and queue need a rate", path)
	}
	if b := im.BurstLoss; b != nil {
		prob("burst_loss.p", b.P)
		prob("burst_loss.r", b.R)
		prob("burst_loss.loss_good", b.LossGood)
		if b.LossBad != nil {
			prob("burst_loss.loss_bad", *b.LossBad)
		}
		if b.R == 0 {
			errs.Addf("%s.burst_loss.r: must be > 0 or the path never recovers", path)
		}
	}
}

var sysctlRE = regexp.MustCompile(`^net\.[a-z0-9_]+(\.[a-z0-9_]+)+$`)

// validSysctl accepts only keys under net., which are per namespace (others
// would change the host).
func validSysctl(errs *config.Errors, path string, m map[string]string) {
	for k, v := range m {
		if !sysctlRE.MatchString(k) || strings.HasPrefix(k, "net.core.") {
			errs.Addf("%s: %q is not a namespace-local net.* setting", path, k)
		}
		if v == "" || strings.ContainsAny(v, "\n/") {
			errs.Addf("%s.%s: bad value %q", path, k, v)
		}
	}
}

// params converts the YAML form to the model's parameters, filling defaults.
func (im Impairment) params() impair.Params {
	p := impair.Params{
		Delay:        im.Delay.D(),
		Jitter:       im.Jitter.D(),
		Loss:         im.Loss,
		RateBits:     int64(im.Rate),
		BucketBytes:  im.Bucket,
		QueueBytes:   im.Queue,
		Reorder:      im.Reorder,
		ReorderDelay: im.ReorderDelay.D(),
	}
	if p.Reorder > 0 && p.ReorderDelay == 0 {
		p.ReorderDelay = 5 * time.Millisecond
	}
	if p.RateBits > 0 && p.QueueBytes == 0 {
		p.QueueBytes = max(64<<10, int(p.RateBits/8/10))
	}
	if b := im.BurstLoss; b != nil {
		ge := impair.GilbertElliott{P: b.P, R: b.R, LossGood: b.LossGood, LossBad: 1}
		if b.LossBad != nil {
			ge.LossBad = *b.LossBad
		}
		p.Burst = &ge
	}
	return p
}

// nodeAddr returns node i's address: explicit, or the (i+1)th of the subnet.
func nodeAddr(subnet netip.Prefix, i int, explicit string) (netip.Addr, error) {
	if explicit != "" {
		a, err := netip.ParseAddr(explicit)
		if err != nil {
			return netip.Addr{}, err
		}
		if !subnet.Contains(a) || a == subnet.Masked().Addr() {
			return netip.Addr{}, fmt.Errorf("%s is not a host address of %s", a, subnet)
		}
		return a, nil
	}
	a := subnet.Masked().Addr()
	for range i + 1 {
		a = a.Next()
	}
	if !subnet.Contains(a) {
		return netip.Addr{}, fmt.Errorf("subnet %s has no room for node %d", subnet, i)
	}
	return a, nil
}

// Load reads a world file strictly (unknown keys are errors with file:line).
func Load(path string) (Config, error) {
	c := Default()
	if err := config.Load(path, &c); err != nil {
		return Config{}, err
	}
	return c, nil
}
