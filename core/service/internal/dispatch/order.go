package dispatch

import (
	"context"
	"sync"
)

// Requests of one session arrive in order on the node's subscription, but
// run on several workers at once: without a rule, two sends of a session
// reach the store in whatever order the scheduler runs the workers (a newly
// started goroutine often runs before the one started just before it), and
// the later message gets the lower seq. sendOrder hands each ordered
// request (Route.Ordered: the send) a turn in arrival order: everything
// before the store runs concurrently, but a send enters the store's commit
// queue only after the session's previous send has entered it (or was
// refused, or failed before the store). With one committer (SQLite) the
// queue's order is the seq order. Sends of a session that several nodes
// serve, or that concurrent PostgreSQL committers take into different
// transactions, are not ordered by this.
type sendOrder struct {
	mu   sync.Mutex
	last map[string]*Turn // session id → its newest request's turn
}

// Turn is an ordered request's place among its session's.
type Turn struct {
	o       *sendOrder
	session string
	prev    <-chan struct{} // closed when the previous request is queued; nil: none
	mine    chan struct{}
	once    sync.Once
}

// next gives the session's next request its turn; called in arrival order.
func (o *sendOrder) next(session string) *Turn {
	t := &Turn{o: o, session: session, mine: make(chan struct{})}
	o.mu.Lock()
	if o.last == nil {
		o.last = map[string]*Turn{}
	}
	if p := o.last[session]; p != nil {
		t.prev = p.mine
	}
	o.last[session] = t
	o.mu.Unlock()
	return t
}

// Wait blocks until the previous request of the session is queued.
func (t *Turn) Wait(ctx context.Context) error {
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

// Done lets the session's next request go on (idempotent); the dispatcher
// calls it when the handler returns, if the handler did not before.
func (t *Turn) Done() {
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

func withTurn(ctx context.Context, t *Turn) context.Context {
	return context.WithValue(ctx, turnKey{}, t)
}

// TurnOf is the turn of an ordered request's handler context (nil: none,
// as for requests that do not come from a session's bus request).
func TurnOf(ctx context.Context) *Turn {
	t, _ := ctx.Value(turnKey{}).(*Turn)
	return t
}
