// Package state is the LBS's replicated state machine: the routing document
// and its history, entry point health, TURN shared secrets, tokens and the
// audit log. Commands are JSON; each Apply builds a new immutable State so
// readers never lock, and recompiles the selection engine.
package state

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/longlink/longlink/lbs/internal/engine"
	"github.com/longlink/longlink/lbs/internal/model"
	"github.com/longlink/longlink/lbs/internal/rum"
)

// Limits on what the state keeps.
const (
	MaxHistory = 50   // routing document versions kept
	MaxAudit   = 2000 // audit entries kept
)

// Ops.
const (
	OpApplyDoc         = "apply_doc"
	OpHealth           = "health"
	OpDrain            = "drain"
	OpUndrain          = "undrain"
	OpRotate           = "rotate"   // ID: appkey, Comment: why
	OpUnrotate         = "unrotate" // ID: appkey
	OpTokenAdd         = "token_add"
	OpTokenRemove      = "token_remove"
	OpTurnSecretAdd    = "turn_secret_add"
	OpTurnSecretRemove = "turn_secret_remove"
	OpRestore          = "restore"
	// OpRUM adds users' measurements (rum.Batch) to the RUM table. Not a
	// policy version, not audited: soft state, replicated so that every
	// member steers alike and a new leader has it.
	OpRUM = "rum"
)

// Command is one replicated change.
type Command struct {
	Op      string          `json:"op"`
	Who     string          `json:"who"`
	At      time.Time       `json:"at"`
	Comment string          `json:"comment,omitempty"`
	Doc     *model.Document `json:"doc,omitempty"`
	ID      string          `json:"id,omitempty"` // entry point, token or secret id
	Health  *model.Health   `json:"health,omitempty"`
	Token   *Token          `json:"token,omitempty"`
	Secret  *TurnSecret     `json:"secret,omitempty"`
	State   *State          `json:"state,omitempty"` // restore
	RUM     *rum.Batch      `json:"rum,omitempty"`
}

// Token kinds: operators change and read everything; readers (read-only
// operators: dashboards, the console's viewers) read everything except
// secrets; nodes report health and load.
const (
	TokenOperator = "operator"
	TokenReader   = "reader"
	TokenNode     = "node"
)

// Token is an operator, reader or node credential; only its SHA-256 is
// stored.
type Token struct {
	ID      string    `json:"id"`
	Kind    string    `json:"kind"` // TokenOperator, TokenReader or TokenNode
	Node    string    `json:"node,omitempty"`
	Hash    string    `json:"hash"`
	Created time.Time `json:"created"`
}

// TurnSecret is a shared secret for TURN REST credentials. Several live at
// once so they can be rotated.
type TurnSecret struct {
	ID      string    `json:"id"`
	Secret  string    `json:"secret"`
	Created time.Time `json:"created"`
}

// DocVersion is one applied routing document.
type DocVersion struct {
	Version uint64         `json:"version"`
	Index   uint64         `json:"index"`
	At      time.Time      `json:"at"`
	Who     string         `json:"who"`
	Comment string         `json:"comment,omitempty"`
	Doc     model.Document `json:"doc"`
}

// AuditEntry records who changed what, when.
type AuditEntry struct {
	Index uint64    `json:"index"`
	At    time.Time `json:"at"`
	Who   string    `json:"who"`
	Op    string    `json:"op"`
	What  string    `json:"what"`
}

// State is one immutable version of the replicated state.
type State struct {
	Version uint64                  `json:"version"` // routing policy version
	Index   uint64                  `json:"index"`   // last applied raft index
	Doc     model.Document          `json:"doc"`
	History []DocVersion            `json:"history"`
	Health  map[string]model.Health `json:"health"`
	Drained map[string]string       `json:"drained"` // entry point → who drained it
	// Rotated are the apps answered from their reserve pools (appkey →
	// who and why).
	Rotated     map[string]Rotation `json:"rotated,omitempty"`
	TurnSecrets []TurnSecret        `json:"turn_secrets"`
	Tokens      map[string]Token    `json:"tokens"`
	Audit       []AuditEntry        `json:"audit"`
}

// HashToken is how tokens are stored.
func HashToken(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// FindToken returns the token whose secret is given, comparing hashes in
// constant time.
func (s *State) FindToken(secret string) (Token, bool) {
	h := HashToken(secret)
	for _, t := range s.Tokens {
		if subtle.ConstantTimeCompare([]byte(t.Hash), []byte(h)) == 1 {
			return t, true
		}
	}
	return Token{}, false
}

// Rotation is an app rotated to its reserve pools.
type Rotation struct {
	Who string    `json:"who"`
	Why string    `json:"why,omitempty"`
	At  time.Time `json:"at"`
}

// RotatedWhy is what the engine needs of the rotations: appkey → why.
func (s *State) RotatedWhy() map[string]string {
	if len(s.Rotated) == 0 {
		return nil
	}
	m := make(map[string]string, len(s.Rotated))
	for k, r := range s.Rotated {
		why := r.Why
		if why == "" {
			why = "no reason given"
		}
		m[k] = why + " (by " + r.Who + ")"
	}
	return m
}

// EffectiveHealth merges drains over reported health.
func (s *State) EffectiveHealth() map[string]model.Health {
	if len(s.Drained) == 0 {
		return s.Health
	}
	h := maps.Clone(s.Health)
	if h == nil {
		h = map[string]model.Health{}
	}
	for id, who := range s.Drained {
		x := h[id]
		x.State, x.Reason = model.HealthDraining, "drained by "+who
		h[id] = x
	}
	return h
}

// Result is what Apply returns to the proposer.
type Result struct {
	Index   uint64 `json:"index"`
	Version uint64 `json:"version"`
	Err     string `json:"error,omitempty"`
}

// Snapshot is the state and its compiled engine, swapped atomically.
type Snapshot struct {
	State  *State
	Engine *engine.Engine
}

// FSM implements raft.FSM.
type FSM struct {
	cur      atomic.Pointer[Snapshot]
	onChange func(*Snapshot)
	rum      *rum.Table
}

// New returns an FSM with an empty state. onChange (may be nil) is called
// after every change, from raft's apply goroutine.
func New(onChange func(*Snapshot)) *FSM {
	f := &FSM{onChange: onChange, rum: rum.NewTable()}
	st := &State{Health: map[string]model.Health{}, Tokens: map[string]Token{}, Drained: map[string]string{}}
	e, _ := engine.Compile(&st.Doc, nil, 0)
	f.cur.Store(&Snapshot{State: st, Engine: e})
	return f
}

// Current returns the current state and engine.
func (f *FSM) Current() *Snapshot { return f.cur.Load() }

// RUM is the table of users' measurements (OpRUM).
func (f *FSM) RUM() *rum.Table { return f.rum }

// ErrRejected wraps errors from commands the state machine refused.
var ErrRejected = errors.New("rejected")

// Apply applies a committed log entry.
func (f *FSM) Apply(l *raft.Log) any {
	var c Command
	if err := json.Unmarshal(l.Data, &c); err != nil {
		return Result{Index: l.Index, Err: "bad command: " + err.Error()}
	}
	cur := f.cur.Load()
	if c.Op == OpRUM {
		// Soft state beside the document: no new policy version and no
		// recompiled engine, only the applied index moves.
		if c.RUM != nil {
			f.rum.Apply(c.At, c.RUM, cur.State.Doc.RUM.WithDefaults())
		}
		st := *cur.State
		st.Index = l.Index
		f.cur.Store(&Snapshot{State: &st, Engine: cur.Engine})
		return Result{Index: l.Index, Version: cur.State.Version}
	}
	next, err := apply(cur.State, &c, l.Index)
	if err != nil {
		// a refused command still advances the applied index
		st := *cur.State
		st.Index = l.Index
		f.cur.Store(&Snapshot{State: &st, Engine: cur.Engine})
		return Result{Index: l.Index, Version: cur.State.Version, Err: err.Error()}
	}
	next.Index = l.Index
	e, err := engine.CompileRotated(&next.Doc, next.EffectiveHealth(), next.RotatedWhy(), next.Version)
	if err != nil {
		st := *cur.State
		st.Index = l.Index
		f.cur.Store(&Snapshot{State: &st, Engine: cur.Engine})
		return Result{Index: l.Index, Version: cur.State.Version, Err: "compile: " + err.Error()}
	}
	snap := &Snapshot{State: next, Engine: e}
	f.cur.Store(snap)
	if f.onChange != nil {
		f.onChange(snap)
	}
	return Result{Index: l.Index, Version: next.Version}
}

func appendAudit(a []AuditEntry, e AuditEntry) []AuditEntry {
	out := make([]AuditEntry, 0, min(len(a)+1, MaxAudit))
	if len(a)+1 > MaxAudit {
		a = a[len(a)+1-MaxAudit:]
	}
	out = append(out, a...)
	return append(out, e)
}

// apply returns the next state, or an error if the command is refused (the
// proposer validated it, but state may have moved on since).
func apply(cur *State, c *Command, index uint64) (*State, error) {
	s := *cur
	audit := func(what string) {
		s.Audit = appendAudit(cur.Audit, AuditEntry{Index: index, At: c.At, Who: c.Who, Op: c.Op, What: what})
	}
	switch c.Op {
	case OpApplyDoc:
		if c.Doc == nil {
			return nil, errors.New("apply_doc without a document")
		}
		if err := c.Doc.Validate(); err != nil {
			return nil, err
		}
		s.Version = cur.Version + 1
		s.Doc = *c.Doc
		h := append(slices.Clone(cur.History), DocVersion{Version: s.Version, Index: index, At: c.At, Who: c.Who, Comment: c.Comment, Doc: *c.Doc})
		if len(h) > MaxHistory {
			h = h[len(h)-MaxHistory:]
		}
		s.History = h
		audit(fmt.Sprintf("policy version %d: %d apps, %d pools, %d entry points, %d rules; %s",
			s.Version, len(c.Doc.Apps), len(c.Doc.Pools), len(c.Doc.EntryPoints), len(c.Doc.Rules), c.Comment))
	case OpHealth:
		if c.Health == nil || c.ID == "" {
			return nil, errors.New("health without id or state")
		}
		s.Health = maps.Clone(cur.Health)
		if s.Health == nil {
			s.Health = map[string]model.Health{}
		}
		s.Health[c.ID] = *c.Health
		// health transitions are not operator actions: counted in metrics,
		// not audited, so the audit log keeps the operators' history.
	case OpDrain, OpUndrain:
		if c.ID == "" {
			return nil, errors.New("drain without an entry point id")
		}
		s.Drained = maps.Clone(cur.Drained)
		if s.Drained == nil {
			s.Drained = map[string]string{}
		}
		if c.Op == OpDrain {
			s.Drained[c.ID] = c.Who
		} else {
			delete(s.Drained, c.ID)
		}
		audit(c.Op + " " + c.ID)
	case OpRotate, OpUnrotate:
		if c.ID == "" {
			return nil, errors.New("rotate without an appkey")
		}
		s.Rotated = maps.Clone(cur.Rotated)
		if s.Rotated == nil {
			s.Rotated = map[string]Rotation{}
		}
		if c.Op == OpRotate {
			s.Rotated[c.ID] = Rotation{Who: c.Who, Why: c.Comment, At: c.At}
			audit(c.Op + " " + c.ID + ": " + c.Comment)
		} else {
			delete(s.Rotated, c.ID)
			audit(c.Op + " " + c.ID)
		}
	case OpTokenAdd:
		if c.Token == nil || c.Token.ID == "" || len(c.Token.Hash) != 64 || (c.Token.Kind != TokenOperator && c.Token.Kind != TokenReader && c.Token.Kind != TokenNode) {
			return nil, errors.New("token_add: bad token")
		}
		s.Tokens = maps.Clone(cur.Tokens)
		if s.Tokens == nil {
			s.Tokens = map[string]Token{}
		}
		s.Tokens[c.Token.ID] = *c.Token
		audit(fmt.Sprintf("token %s (%s %s)", c.Token.ID, c.Token.Kind, c.Token.Node))
	case OpTokenRemove:
		if _, ok := cur.Tokens[c.ID]; !ok {
			return nil, fmt.Errorf("no token %q", c.ID)
		}
		s.Tokens = maps.Clone(cur.Tokens)
		delete(s.Tokens, c.ID)
		audit("token " + c.ID)
	case OpTurnSecretAdd:
		if c.Secret == nil || c.Secret.ID == "" || len(c.Secret.Secret) < 16 {
			return nil, errors.New("turn_secret_add: id and a secret of at least 16 bytes required")
		}
		s.TurnSecrets = slices.DeleteFunc(slices.Clone(cur.TurnSecrets), func(t TurnSecret) bool { return t.ID == c.Secret.ID })
		s.TurnSecrets = append(s.TurnSecrets, *c.Secret)
		audit("turn secret " + c.Secret.ID)
	case OpTurnSecretRemove:
		n := len(cur.TurnSecrets)
		s.TurnSecrets = slices.DeleteFunc(slices.Clone(cur.TurnSecrets), func(t TurnSecret) bool { return t.ID == c.ID })
		if len(s.TurnSecrets) == n {
			return nil, fmt.Errorf("no turn secret %q", c.ID)
		}
		audit("turn secret " + c.ID)
	case OpRestore:
		if c.State == nil {
			return nil, errors.New("restore without a state")
		}
		if err := c.State.Doc.Validate(); err != nil {
			return nil, fmt.Errorf("restore: %w", err)
		}
		r := *c.State
		// the policy version keeps going up so clients see a change
		r.Version = max(cur.Version, r.Version) + 1
		r.Audit = cur.Audit
		s = r
		audit(fmt.Sprintf("restored state (policy version %d from the backup)", c.State.Version))
	default:
		return nil, fmt.Errorf("unknown op %q", c.Op)
	}
	return &s, nil
}

// Snapshot implements raft.FSM.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{persisted{State: f.cur.Load().State, RUM: f.rum.Dump()}}, nil
}

// persisted is a snapshot's JSON: the state's fields and the RUM table
// beside them (older snapshots, without it, restore an empty table).
type persisted struct {
	*State
	RUM []rum.Entry `json:"rum,omitempty"`
}

// Restore implements raft.FSM.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	p := persisted{State: &State{}}
	if err := json.NewDecoder(rc).Decode(&p); err != nil {
		return fmt.Errorf("state: restore snapshot: %w", err)
	}
	st := *p.State
	e, err := engine.CompileRotated(&st.Doc, st.EffectiveHealth(), st.RotatedWhy(), st.Version)
	if err != nil {
		return fmt.Errorf("state: restore snapshot: %w", err)
	}
	snap := &Snapshot{State: &st, Engine: e}
	f.rum.Load(p.RUM)
	f.cur.Store(snap)
	if f.onChange != nil {
		f.onChange(snap)
	}
	return nil
}

type fsmSnapshot struct{ p persisted }

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := json.NewEncoder(sink).Encode(&s.p); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}

// Reset empties the state (used after raft.RecoverCluster, before raft
// restores the recovered snapshot).
func (f *FSM) Reset() {
	st := &State{Health: map[string]model.Health{}, Tokens: map[string]Token{}, Drained: map[string]string{}}
	e, _ := engine.Compile(&st.Doc, nil, 0)
	f.rum.Load(nil)
	f.cur.Store(&Snapshot{State: st, Engine: e})
}
