package route

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/longlink/longlink/lbs/lbsapi"
	"github.com/longlink/longlink/pkg/logging"
)

// NodeSubject carries NodeAnnounce messages: every app service node says
// every few seconds which cluster and version it serves, so gateways can
// tell the LBS which nodes are live (explain) and count them by version.
const NodeSubject = "ll.svcnodes"

// NodeAnnounce is one service node's periodic announcement.
type NodeAnnounce struct {
	ID      string `json:"id"`
	Cluster string `json:"cluster"`
	// Version is the node's label ("" unlabelled: it serves the stable
	// subjects only).
	Version string `json:"version,omitempty"`
	// Site is the node's site label ("" unlabelled).
	Site string `json:"site,omitempty"`
	// Canary: it takes only what a grayscale rule sends to its version.
	Canary   bool  `json:"canary,omitempty"`
	Draining bool  `json:"draining,omitempty"`
	EveryMS  int64 `json:"every_ms"`
}

// DecodeNodeAnnounce parses and checks an announcement from the bus.
func DecodeNodeAnnounce(b []byte) (NodeAnnounce, error) {
	var a NodeAnnounce
	if err := json.Unmarshal(b, &a); err != nil {
		return a, err
	}
	switch {
	case a.ID == "" || len(a.ID) > 128:
		return a, errors.New("node announce: bad id")
	case !subjectSafe(a.Cluster):
		return a, errors.New("node announce: bad cluster")
	case a.Version != "" && !lbsapi.ValidVersionLabel(a.Version):
		return a, errors.New("node announce: bad version")
	case a.Site != "" && !lbsapi.ValidSite(a.Site):
		return a, errors.New("node announce: bad site")
	case a.Canary && a.Version == "":
		return a, errors.New("node announce: a canary needs a version")
	case a.EveryMS < 100 || a.EveryMS > 60_000:
		return a, errors.New("node announce: every_ms not in 100..60000")
	}
	return a, nil
}

// Announcer publishes a service node's announcements until Shutdown, which
// sends a last one marked draining.
type Announcer struct {
	nc    *nats.Conn
	a     NodeAnnounce
	every time.Duration
	log   *slog.Logger
	stop  chan struct{}
	wg    sync.WaitGroup
	once  sync.Once
}

// NewAnnouncer announces a (its EveryMS set from every).
func NewAnnouncer(nc *nats.Conn, a NodeAnnounce, every time.Duration, log *slog.Logger) *Announcer {
	a.EveryMS = every.Milliseconds()
	return &Announcer{nc: nc, a: a, every: every, log: logging.OrDiscard(log).With("component", "route"), stop: make(chan struct{})}
}

// Start sends the first announcement and keeps announcing.
func (an *Announcer) Start(context.Context) error {
	if _, err := DecodeNodeAnnounce(an.marshal()); err != nil {
		return fmt.Errorf("route: %w", err)
	}
	an.publish()
	an.wg.Add(1)
	go func() {
		defer an.wg.Done()
		t := time.NewTicker(an.every)
		defer t.Stop()
		for {
			select {
			case <-an.stop:
				return
			case <-t.C:
				an.publish()
			}
		}
	}()
	return nil
}

// Shutdown announces the node draining and stops. Idempotent.
func (an *Announcer) Shutdown(context.Context) error {
	an.once.Do(func() {
		close(an.stop)
		an.wg.Wait()
		an.a.Draining = true
		an.publish()
	})
	return nil
}

func (an *Announcer) marshal() []byte {
	b, _ := json.Marshal(an.a)
	return b
}

func (an *Announcer) publish() {
	if err := an.nc.Publish(NodeSubject, an.marshal()); err != nil {
		an.log.Debug("node announce", "err", err)
	}
}

// Nodes keeps the live service nodes a gateway hears announcing.
type Nodes struct {
	t   *Table
	nc  *nats.Conn
	log *slog.Logger
	now func() time.Time

	mu    sync.Mutex
	nodes map[string]heard
	sub   *nats.Subscription
	stop  chan struct{}
	wg    sync.WaitGroup
}

type heard struct {
	a    NodeAnnounce
	last time.Time
}

// WatchNodes subscribes to the announcements; the table's metrics count the
// live nodes by cluster and version.
func (t *Table) WatchNodes(nc *nats.Conn) (*Nodes, error) {
	n := &Nodes{t: t, nc: nc, log: t.log, now: time.Now, nodes: map[string]heard{}, stop: make(chan struct{})}
	sub, err := nc.Subscribe(NodeSubject, n.handle)
	if err != nil {
		return nil, fmt.Errorf("route: subscribe %s: %w", NodeSubject, err)
	}
	n.sub = sub
	n.wg.Add(1)
	go func() { // keeps the gauge true when nobody asks for Live
		defer n.wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-n.stop:
				return
			case <-t.C:
				n.Live()
			}
		}
	}()
	return n, nil
}

// Close stops listening.
func (n *Nodes) Close() error {
	close(n.stop)
	n.wg.Wait()
	return n.sub.Unsubscribe()
}

func (n *Nodes) handle(m *nats.Msg) {
	a, err := DecodeNodeAnnounce(m.Data)
	if err != nil {
		n.log.Debug("bad node announcement", "err", err)
		return
	}
	n.mu.Lock()
	n.nodes[a.ID] = heard{a: a, last: n.now()}
	n.mu.Unlock()
}

// Live lists the nodes heard within three of their announcement intervals
// (draining ones included, marked), in id order, and updates the gauge.
func (n *Nodes) Live() []lbsapi.ServiceNode {
	now := n.now()
	n.mu.Lock()
	out := make([]lbsapi.ServiceNode, 0, len(n.nodes))
	for id, h := range n.nodes {
		if now.Sub(h.last) > 3*time.Duration(h.a.EveryMS)*time.Millisecond {
			delete(n.nodes, id)
			continue
		}
		out = append(out, lbsapi.ServiceNode{ID: id, Cluster: h.a.Cluster, Version: h.a.Version, Site: h.a.Site, Canary: h.a.Canary, Draining: h.a.Draining})
	}
	n.mu.Unlock()
	slices.SortFunc(out, func(a, b lbsapi.ServiceNode) int { return strings.Compare(a.ID, b.ID) })
	n.t.m.nodes.Reset()
	for _, s := range out {
		if !s.Draining {
			n.t.m.nodes.WithLabelValues(s.Cluster, s.Version).Inc()
		}
	}
	return out
}
