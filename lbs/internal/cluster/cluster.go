// Package cluster runs the LBS's raft group: hashicorp/raft with a raft-wal
// log and stable store, file snapshots, and a mutual-TLS stream layer that
// also carries requests forwarded from followers to the leader (writes,
// membership changes and read-index barriers for linearizable reads).
package cluster

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"

	"github.com/longlink/longlink/lbs/internal/state"
	"github.com/longlink/longlink/pkg/logging"
)

// Config of one raft member.
type Config struct {
	NodeID    string
	Dir       string
	Listener  net.Listener // raft's TCP listener (already bound)
	Advertise string       // the address peers dial; the listener's when empty
	TLS       *tls.Config  // mutual TLS: both sides present certificates of the cluster CA
	// Bootstrap makes a new single-node cluster if Dir holds no state, or a
	// cluster of Peers (id → address) when they are given.
	Bootstrap bool
	Peers     map[string]string

	HeartbeatTimeout time.Duration
	ElectionTimeout  time.Duration
	LeaderLease      time.Duration
	ApplyTimeout     time.Duration
	Logger           *slog.Logger
}

// ErrNoLeader is returned while the cluster has no leader.
var ErrNoLeader = errors.New("cluster: no leader")

// Cluster is one running member.
type Cluster struct {
	cfg       Config
	log       *slog.Logger
	Raft      *raft.Raft
	FSM       *state.FSM
	stream    *tlsStream
	transport *raft.NetworkTransport
	wal       *wal.WAL
	meta      *metadb.BoltMetaDB
	advertise raft.ServerAddress

	mu       sync.Mutex
	shutdown bool

	// peers the leader fails to reach, and since when
	unreachMu sync.Mutex
	unreach   map[string]time.Time
	obsCh     chan raft.Observation
	obs       *raft.Observer
	obsDone   chan struct{}
}

// PeersFile is the file an operator writes to recover from quorum loss: the
// surviving servers, as a JSON array of {"id","address"} objects (raft's
// peers.json format, version 3). It is consumed at start-up.
const PeersFile = "peers.json"

// Open starts raft. The FSM's onChange is wired by the caller through fsm.
func Open(cfg Config, fsm *state.FSM) (*Cluster, error) {
	if cfg.ApplyTimeout == 0 {
		cfg.ApplyTimeout = 5 * time.Second
	}
	log := logging.OrDiscard(cfg.Logger)
	c := &Cluster{cfg: cfg, log: log, FSM: fsm}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	adv := cfg.Advertise
	if adv == "" {
		adv = cfg.Listener.Addr().String()
	}
	c.advertise = raft.ServerAddress(adv)

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.Logger = hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: &slogWriter{log}})
	if cfg.HeartbeatTimeout > 0 {
		rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	}
	if cfg.ElectionTimeout > 0 {
		rc.ElectionTimeout = cfg.ElectionTimeout
	}
	if cfg.LeaderLease > 0 {
		rc.LeaderLeaseTimeout = cfg.LeaderLease
	}
	rc.SnapshotThreshold = 4096
	rc.TrailingLogs = 8192

	if err := os.MkdirAll(filepath.Join(cfg.Dir, "wal"), 0o700); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	// raft-wal's Close leaves its meta database open (and locked), so the
	// cluster owns it and closes it after the WAL.
	c.meta = &metadb.BoltMetaDB{}
	w, err := wal.Open(filepath.Join(cfg.Dir, "wal"), wal.WithMetaStore(c.meta))
	if err != nil {
		c.meta.Close()
		return nil, fmt.Errorf("cluster: open wal: %w", err)
	}
	c.wal = w
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.Dir, 3, rc.Logger)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("cluster: snapshot store: %w", err)
	}
	c.stream = newTLSStream(cfg.Listener, cfg.TLS, c.serveForward)
	c.transport = raft.NewNetworkTransportWithLogger(c.stream, 3, 2*time.Second, rc.Logger)
	closeAll := func() { c.transport.Close(); c.stream.wait(); w.Close(); c.meta.Close() }

	// quorum-loss recovery: the operator wrote peers.json
	peersPath := filepath.Join(cfg.Dir, PeersFile)
	if _, err := os.Stat(peersPath); err == nil {
		conf, err := raft.ReadConfigJSON(peersPath)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("cluster: %s: %w", peersPath, err)
		}
		if err := raft.RecoverCluster(rc, fsm, w, w, snaps, c.transport, conf); err != nil {
			closeAll()
			return nil, fmt.Errorf("cluster: recover from %s: %w", peersPath, err)
		}
		if err := os.Rename(peersPath, peersPath+".applied"); err != nil {
			closeAll()
			return nil, err
		}
		log.Warn("recovered raft configuration from peers.json", "servers", len(conf.Servers))
		// RecoverCluster ran the FSM through the logs; raft restores the
		// recovered snapshot into it again below
		fsm.Reset()
	}

	has, err := raft.HasExistingState(w, w, snaps)
	if err != nil {
		closeAll()
		return nil, err
	}
	r, err := raft.NewRaft(rc, fsm, w, w, snaps, c.transport)
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("cluster: %w", err)
	}
	c.Raft = r
	c.watchPeers()
	if cfg.Bootstrap && !has {
		conf := raft.Configuration{Servers: []raft.Server{{ID: rc.LocalID, Address: c.advertise}}}
		for id, addr := range cfg.Peers {
			if id != cfg.NodeID {
				conf.Servers = append(conf.Servers, raft.Server{ID: raft.ServerID(id), Address: raft.ServerAddress(addr)})
			}
		}
		if err := r.BootstrapCluster(conf).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			c.Close()
			return nil, fmt.Errorf("cluster: bootstrap: %w", err)
		}
	}
	return c, nil
}

// Close stops raft (handing off leadership first when possible) and closes
// the stores. Idempotent.
func (c *Cluster) Close() error {
	c.mu.Lock()
	if c.shutdown {
		c.mu.Unlock()
		return nil
	}
	c.shutdown = true
	c.mu.Unlock()
	if c.Raft.State() == raft.Leader && c.numVoters() > 1 {
		_ = c.Raft.LeadershipTransfer().Error()
	}
	err := c.Raft.Shutdown().Error()
	c.stopWatch()
	c.transport.Close()
	c.stream.Close()
	c.stream.wait()
	c.wal.Close()
	c.meta.Close()
	return err
}

// Kill stops the member abruptly (tests: a crash without leadership transfer).
func (c *Cluster) Kill() {
	c.mu.Lock()
	c.shutdown = true
	c.mu.Unlock()
	c.stream.setBlocked(true)
	c.Raft.Shutdown().Error()
	c.stopWatch()
	c.transport.Close()
	c.stream.Close()
	c.stream.wait()
	c.wal.Close()
	c.meta.Close()
}

// SetPartitioned cuts this member off from every peer (tests).
func (c *Cluster) SetPartitioned(p bool) { c.stream.setBlocked(p) }

func (c *Cluster) numVoters() int {
	f := c.Raft.GetConfiguration()
	if f.Error() != nil {
		return 0
	}
	n := 0
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			n++
		}
	}
	return n
}

// IsLeader reports whether this member leads.
func (c *Cluster) IsLeader() bool { return c.Raft.State() == raft.Leader }

// ID is this member's id.
func (c *Cluster) ID() string { return c.cfg.NodeID }

// forward wire format, after the marker byte: a 4-byte big-endian length and
// a JSON forwardReq; the answer is the same framing around a forwardResp.
type forwardReq struct {
	Kind string          `json:"kind"` // apply, join, remove, readindex
	Cmd  json.RawMessage `json:"cmd,omitempty"`
	ID   string          `json:"id,omitempty"`
	Addr string          `json:"addr,omitempty"`
}

type forwardResp struct {
	Result state.Result `json:"result"`
	Index  uint64       `json:"index,omitempty"`
	Err    string       `json:"error,omitempty"`
	NotLdr bool         `json:"not_leader,omitempty"`
}

const maxFrame = 16 << 20

func writeFrame(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var h [4]byte
	binary.BigEndian.PutUint32(h[:], uint32(len(b)))
	if _, err := w.Write(h[:]); err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

func readFrame(r io.Reader, v any) error {
	var h [4]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(h[:])
	if n > maxFrame {
		return fmt.Errorf("frame of %d bytes over the limit", n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func (c *Cluster) serveForward(conn net.Conn) {
	conn.SetDeadline(time.Now().Add(c.cfg.ApplyTimeout + 5*time.Second))
	var req forwardReq
	if err := readFrame(conn, &req); err != nil {
		return
	}
	var resp forwardResp
	if !c.IsLeader() {
		resp.NotLdr, resp.Err = true, ErrNoLeader.Error()
	} else {
		switch req.Kind {
		case "apply":
			res, err := c.applyLocal(req.Cmd)
			resp.Result = res
			if err != nil {
				resp.Err = err.Error()
			}
		case "join":
			resp.Err = errString(c.joinLocal(req.ID, req.Addr))
		case "remove":
			resp.Err = errString(c.removeLocal(req.ID))
		case "readindex":
			idx, err := c.readIndexLocal()
			resp.Index, resp.Err = idx, errString(err)
		default:
			resp.Err = "unknown request " + req.Kind
		}
	}
	writeFrame(conn, &resp)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// toLeader sends a request to the leader, retrying while an election runs.
func (c *Cluster) toLeader(ctx context.Context, req *forwardReq) (forwardResp, error) {
	var last error = ErrNoLeader
	for {
		addr, id := c.Raft.LeaderWithID()
		if addr != "" && string(id) != c.cfg.NodeID {
			resp, err := c.forwardOnce(ctx, string(addr), req)
			if err == nil && !resp.NotLdr {
				return resp, nil
			}
			if errors.Is(err, errOutcomeUnknown) && req.Kind != "readindex" {
				return forwardResp{}, err
			}
			if err != nil {
				last = err
			}
		} else if string(id) == c.cfg.NodeID {
			return forwardResp{NotLdr: true}, nil // we lead now; caller handles locally
		}
		select {
		case <-ctx.Done():
			return forwardResp{}, fmt.Errorf("cluster: forward to leader: %w (%v)", ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (c *Cluster) forwardOnce(ctx context.Context, addr string, req *forwardReq) (forwardResp, error) {
	conn, err := c.stream.dial(ctx, addr, 2*time.Second)
	if err != nil {
		return forwardResp{}, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	} else {
		conn.SetDeadline(time.Now().Add(c.cfg.ApplyTimeout + 5*time.Second))
	}
	if _, err := conn.Write([]byte{forwardMarker}); err != nil {
		return forwardResp{}, err
	}
	if err := writeFrame(conn, req); err != nil {
		return forwardResp{}, err
	}
	var resp forwardResp
	if err := readFrame(conn, &resp); err != nil {
		// The leader may have acted on the request before the answer was lost.
		return forwardResp{}, fmt.Errorf("%w: %w", errOutcomeUnknown, err)
	}
	return resp, nil
}

// errOutcomeUnknown says a forwarded request reached the leader but its
// answer did not come back: a write may or may not have been applied, so it
// must not be sent again (it would be applied twice).
var errOutcomeUnknown = errors.New("cluster: leader did not answer; outcome unknown")

func (c *Cluster) applyLocal(cmd []byte) (state.Result, error) {
	f := c.Raft.Apply(cmd, c.cfg.ApplyTimeout)
	if err := f.Error(); err != nil {
		return state.Result{}, err
	}
	res, _ := f.Response().(state.Result)
	return res, nil
}

// Propose replicates a command through the leader, from any member, and
// returns its result. A command the state machine refused returns an error
// wrapping state.ErrRejected.
func (c *Cluster) Propose(ctx context.Context, cmd *state.Command) (state.Result, error) {
	b, err := json.Marshal(cmd)
	if err != nil {
		return state.Result{}, err
	}
	for {
		var res state.Result
		if c.IsLeader() {
			res, err = c.applyLocal(b)
			// Only a command that never entered the log is safe to propose
			// again: after ErrLeadershipLost it may still be committed by the
			// next leader, and a retry would apply it twice.
			if errors.Is(err, raft.ErrNotLeader) {
				if ctx.Err() != nil {
					return res, err
				}
				time.Sleep(20 * time.Millisecond)
				continue
			}
		} else {
			resp, ferr := c.toLeader(ctx, &forwardReq{Kind: "apply", Cmd: b})
			if ferr != nil {
				return res, ferr
			}
			if resp.NotLdr {
				continue
			}
			res = resp.Result
			if resp.Err != "" {
				err = errors.New(resp.Err)
			}
		}
		if err != nil {
			return res, fmt.Errorf("cluster: propose: %w", err)
		}
		if res.Err != "" {
			return res, fmt.Errorf("%w: %s", state.ErrRejected, res.Err)
		}
		return res, nil
	}
}

// readIndexLocal runs on the leader: after a barrier every committed entry
// is in the FSM, and VerifyLeader confirms no newer leader exists. The
// returned index is the FSM's (last applied command), which followers
// compare with their own FSM's.
func (c *Cluster) readIndexLocal() (uint64, error) {
	if err := c.Raft.Barrier(c.cfg.ApplyTimeout).Error(); err != nil {
		return 0, err
	}
	if err := c.Raft.VerifyLeader().Error(); err != nil {
		return 0, err
	}
	return c.FSM.Current().State.Index, nil
}

// ReadIndex makes the next local read linearizable: it learns the leader's
// commit index (after the leader confirmed it still leads) and waits until
// this member applied it.
func (c *Cluster) ReadIndex(ctx context.Context) error {
	var idx uint64
	for {
		if c.IsLeader() {
			var err error
			if idx, err = c.readIndexLocal(); err != nil {
				if ctx.Err() == nil && (errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost)) {
					continue
				}
				return fmt.Errorf("cluster: read index: %w", err)
			}
		} else {
			resp, err := c.toLeader(ctx, &forwardReq{Kind: "readindex"})
			if err != nil {
				return err
			}
			if resp.NotLdr {
				continue
			}
			if resp.Err != "" {
				return errors.New(resp.Err)
			}
			idx = resp.Index
		}
		break
	}
	for c.FSM.Current().State.Index < idx {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
	return nil
}

func (c *Cluster) joinLocal(id, addr string) error {
	if id == "" || addr == "" {
		return errors.New("join: id and address required")
	}
	return c.Raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, c.cfg.ApplyTimeout).Error()
}

func (c *Cluster) removeLocal(id string) error {
	return c.Raft.RemoveServer(raft.ServerID(id), 0, c.cfg.ApplyTimeout).Error()
}

func (c *Cluster) membership(ctx context.Context, kind, id, addr string) error {
	for {
		if c.IsLeader() {
			if kind == "join" {
				return c.joinLocal(id, addr)
			}
			return c.removeLocal(id)
		}
		resp, err := c.toLeader(ctx, &forwardReq{Kind: kind, ID: id, Addr: addr})
		if err != nil {
			return err
		}
		if resp.NotLdr {
			continue
		}
		if resp.Err != "" {
			return errors.New(resp.Err)
		}
		return nil
	}
}

// Join adds a voter (through the leader).
func (c *Cluster) Join(ctx context.Context, id, addr string) error {
	return c.membership(ctx, "join", id, addr)
}

// Remove removes a server (through the leader).
func (c *Cluster) Remove(ctx context.Context, id string) error {
	return c.membership(ctx, "remove", id, "")
}

// Server is one member as Status shows it.
type Server struct {
	ID       string `json:"id"`
	Address  string `json:"address"`
	Suffrage string `json:"suffrage"`
	Leader   bool   `json:"leader"`
}

// Status is the raft status of this member.
type Status struct {
	ID           string            `json:"id"`
	State        string            `json:"state"`
	Leader       string            `json:"leader"`
	LeaderID     string            `json:"leader_id"`
	Term         uint64            `json:"term"`
	CommitIndex  uint64            `json:"commit_index"`
	AppliedIndex uint64            `json:"applied_index"`
	LastContact  string            `json:"last_contact"`
	Servers      []Server          `json:"servers"`
	Stats        map[string]string `json:"stats"`
}

// Status reports raft's view from this member.
func (c *Cluster) Status() Status {
	addr, id := c.Raft.LeaderWithID()
	st := Status{ID: c.cfg.NodeID, State: c.Raft.State().String(), Leader: string(addr), LeaderID: string(id),
		Term: c.Raft.CurrentTerm(), CommitIndex: c.Raft.CommitIndex(), AppliedIndex: c.Raft.AppliedIndex(), Stats: c.Raft.Stats()}
	if c.IsLeader() {
		st.LastContact = "leader"
	} else if lc := c.Raft.LastContact(); !lc.IsZero() {
		st.LastContact = time.Since(lc).Round(time.Millisecond).String()
	} else {
		st.LastContact = "never"
	}
	if f := c.Raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			st.Servers = append(st.Servers, Server{ID: string(s.ID), Address: string(s.Address), Suffrage: s.Suffrage.String(), Leader: s.ID == id})
		}
	}
	return st
}

// Staleness estimates how far behind the leader this member's reads may be:
// zero on the leader, else the time since it last heard from the leader.
func (c *Cluster) Staleness() time.Duration {
	if c.IsLeader() {
		return 0
	}
	lc := c.Raft.LastContact()
	if lc.IsZero() {
		return -1
	}
	return time.Since(lc)
}

// TakeSnapshot asks raft for a snapshot now (compacting the log); nothing
// new since the last one is not an error.
func (c *Cluster) TakeSnapshot() error {
	err := c.Raft.Snapshot().Error()
	if errors.Is(err, raft.ErrNothingNewToSnapshot) {
		return nil
	}
	return err
}

type slogWriter struct{ log *slog.Logger }

// Write logs one hclog line (warnings and errors only) at its level. A
// member that has never known a leader starting an election is how every
// cluster starts, so that warning is logged at info.
func (w *slogWriter) Write(p []byte) (int, error) {
	msg := string(trimNL(p))
	lvl := slog.LevelWarn
	switch {
	case strings.Contains(msg, "[ERROR]"):
		lvl = slog.LevelError
	case strings.Contains(msg, "starting election") && strings.Contains(msg, "last-leader-id= ") || strings.HasSuffix(msg, "last-leader-id="):
		lvl = slog.LevelInfo
	}
	w.log.Log(context.Background(), lvl, msg, "component", "raft")
	return len(p), nil
}

func trimNL(p []byte) []byte {
	for len(p) > 0 && (p[len(p)-1] == '\n' || p[len(p)-1] == '\r') {
		p = p[:len(p)-1]
	}
	return p
}

// watchPeers records, on the leader, which peers miss raft heartbeats.
func (c *Cluster) watchPeers() {
	c.unreach = map[string]time.Time{}
	c.obsCh = make(chan raft.Observation, 64)
	c.obsDone = make(chan struct{})
	c.obs = raft.NewObserver(c.obsCh, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.FailedHeartbeatObservation, raft.ResumedHeartbeatObservation, raft.LeaderObservation:
			return true
		}
		return false
	})
	c.Raft.RegisterObserver(c.obs)
	go func() {
		defer close(c.obsDone)
		for o := range c.obsCh {
			c.unreachMu.Lock()
			switch d := o.Data.(type) {
			case raft.FailedHeartbeatObservation:
				if _, ok := c.unreach[string(d.PeerID)]; !ok {
					c.unreach[string(d.PeerID)] = d.LastContact
				}
			case raft.ResumedHeartbeatObservation:
				delete(c.unreach, string(d.PeerID))
			case raft.LeaderObservation:
				c.unreach = map[string]time.Time{} // a new term: start over
			}
			c.unreachMu.Unlock()
		}
	}()
}

func (c *Cluster) stopWatch() {
	if c.obs == nil {
		return
	}
	c.Raft.DeregisterObserver(c.obs)
	close(c.obsCh)
	<-c.obsDone
	c.obs = nil
}

// UnreachableFor reports how long the leader has failed to reach peer id
// (0 if it reaches it, or if this member does not lead).
func (c *Cluster) UnreachableFor(id string) time.Duration {
	if !c.IsLeader() {
		return 0
	}
	c.unreachMu.Lock()
	defer c.unreachMu.Unlock()
	since, ok := c.unreach[id]
	if !ok {
		return 0
	}
	if since.IsZero() {
		return time.Nanosecond
	}
	return time.Since(since)
}
