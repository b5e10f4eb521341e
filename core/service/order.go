package service

import (
	"context"
	"sync"
)

// Requests of one session arrive in order on the node's subscription, but
// run on several workers at once: without a rule, two sends of a session
// reach the store in whatever order the scheduler runs the workers (a newly
// started goroutine often runs before the one started just before it), and
// the later message gets the lower seq. sendOrder hands each send a turn
// in arrival order: everything before the store runs concurrently, but a
// send enters the store's commit queue only after the session's previous
// send has entered it (or was refused, or failed before the store). With
// one committer (SQLite) the queue's order is the seq order. Sends of a
// session that several nodes serve, or that concurrent PostgreSQL
// committers take into different transactions, are not ordered by this.
type sendOrder struct {
	mu   sync.Mutex
	last map[string]*sendTurn // session id → its newest send's turn
}

type sendTurn struct {
	o       *sendOrder
	session string
	prev    <-chan struct{} // closed when the previous send is queued; nil: none
	mine    chan struct{}
	once    sync.Once
}

// next gives the session's next send its turn; called in arrival order.
func (o *sendOrder) next(session string) *sendTurn {
	t := &sendTurn{o: o, session: session, mine: make(chan struct{})}
	o.mu.Lock()
	if o.last == nil {
		o.last = map[string]*sendTurn{}
	}
	if p := o.last[session]; p != nil {
		t.prev = p.mine
	}
	o.last[session] = t
	o.mu.Unlock()
	return t
}

// wait blocks until the previous send of the session is queued.
func (t *sendTurn) wait(ctx context.Context) error {
	if t.prev == nil {
		return nil
	}
	select {
	case <-t.prev:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// done lets the session's next send go to the store (idempotent).
func (t *sendTurn) done() {
	t.once.Do(func() {
		close(t.mine)
		t.o.mu.Lock()
		if t.o.last[t.session] == t {
			delete(t.o.last, t.session)
		}
		t.o.mu.Unlock()
	})
}

type turnKey struct{}

func withTurn(ctx context.Context, t *sendTurn) context.Context {
	return context.WithValue(ctx, turnKey{}, t)
}

func turnOf(ctx context.Context) *sendTurn {
	t, _ := ctx.Value(turnKey{}).(*sendTurn)
	return t
}
