package edge

import (
	"errors"
	"net/netip"
	"sort"
	"sync"
	"time"
)

// Session is one client flow held by the edge: a Link or WebLink TCP
// connection, or a UDP mapping.
type Session struct {
	ID       uint64
	Listener string
	Client   netip.AddrPort
	Path     string // the next hop the session's tunnel takes now
	Started  time.Time
	close    func()
	path     func() string // Path, when it can change (a resumable stream)
}

var (
	errTooMany  = errors.New("edge: session limit reached")
	errPerIP    = errors.New("edge: per-IP session limit reached")
	errDraining = errors.New("edge: draining")
)

// sessionTable tracks every session and enforces the limits.
type sessionTable struct {
	mu       sync.Mutex
	next     uint64
	byID     map[uint64]*Session
	perIP    map[netip.Addr]int
	max      int
	maxPerIP int
	draining bool
	empty    chan struct{} // closed when draining and no session is left
}

func newSessionTable(max, maxPerIP int) *sessionTable {
	return &sessionTable{byID: map[uint64]*Session{}, perIP: map[netip.Addr]int{}, max: max, maxPerIP: maxPerIP, empty: make(chan struct{})}
}

// add registers a session or says which limit refused it.
func (t *sessionTable) add(listener string, client netip.AddrPort, closeFn func()) (*Session, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.draining {
		return nil, errDraining
	}
	if len(t.byID) >= t.max {
		return nil, errTooMany
	}
	ip := client.Addr().Unmap()
	if t.perIP[ip] >= t.maxPerIP {
		return nil, errPerIP
	}
	t.next++
	s := &Session{ID: t.next, Listener: listener, Client: client, Started: time.Now(), close: closeFn}
	t.byID[s.ID] = s
	t.perIP[ip]++
	return s, nil
}

func (t *sessionTable) remove(s *Session) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.byID[s.ID]; !ok {
		return
	}
	delete(t.byID, s.ID)
	ip := s.Client.Addr().Unmap()
	if t.perIP[ip]--; t.perIP[ip] <= 0 {
		delete(t.perIP, ip)
	}
	if t.draining && len(t.byID) == 0 {
		select {
		case <-t.empty:
		default:
			close(t.empty)
		}
	}
}

// setPath records the session's path: path() is asked whenever the table
// is read (a resumable stream moves).
func (t *sessionTable) setPath(s *Session, path func() string) {
	t.mu.Lock()
	s.path = path
	t.mu.Unlock()
}

// startDrain refuses new sessions from now on.
func (t *sessionTable) startDrain() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.draining = true
	if len(t.byID) == 0 {
		select {
		case <-t.empty:
		default:
			close(t.empty)
		}
	}
}

// oldest returns up to n sessions, oldest first.
func (t *sessionTable) oldest(n int) []*Session {
	t.mu.Lock()
	defer t.mu.Unlock()
	all := make([]*Session, 0, len(t.byID))
	for _, s := range t.byID {
		all = append(all, s)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].ID < all[j].ID })
	if len(all) > n {
		all = all[:n]
	}
	return all
}

func (t *sessionTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.byID)
}

// Snapshot copies the table (for diagnostics and tests).
func (t *sessionTable) snapshot() []Session {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Session, 0, len(t.byID))
	for _, s := range t.byID {
		c := *s
		if s.path != nil {
			c.Path = s.path()
		}
		c.path = nil
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
