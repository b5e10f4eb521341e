package turn

import (
	"errors"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

var (
	errQuotaUser  = errors.New("turn: allocation quota of the user reached")
	errQuotaApp   = errors.New("turn: allocation quota of the app reached")
	errQuotaTotal = errors.New("turn: server allocation capacity reached")
	errDraining   = errors.New("turn: draining, no new allocations")
)

// userState is what one appkey:account holds: its allocation count and its
// shared bandwidth buckets (one per direction).
type userState struct {
	id     string
	app    string
	allocs int
	up     *rate.Limiter // client to peer
	down   *rate.Limiter // peer to client
}

// quotaBook counts allocations per user, per app and in total.
type quotaBook struct {
	cfg     QuotaConfig
	userBps int // bytes per second, 0: unlimited
	mu      sync.Mutex
	users   map[string]*userState
	apps    map[string]int
	total   int
}

func newQuotaBook(q QuotaConfig, l LimitConfig) *quotaBook {
	return &quotaBook{cfg: q, userBps: l.UserKbps * 1000 / 8, users: map[string]*userState{}, apps: map[string]int{}}
}

// set replaces the quotas at once, and the per-user bandwidth for users
// whose first allocation comes after it.
func (q *quotaBook) set(qc QuotaConfig, l LimitConfig) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.cfg, q.userBps = qc, l.UserKbps*1000/8
}

func appOf(userID string) string {
	app, _, _ := strings.Cut(userID, ":")
	return app
}

// check reports, without reserving, whether userID may allocate one more.
func (q *quotaBook) check(userID string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.checkLocked(userID)
}

func (q *quotaBook) checkLocked(userID string) error {
	if q.cfg.Total > 0 && q.total >= q.cfg.Total {
		return errQuotaTotal
	}
	if q.cfg.PerApp > 0 && q.apps[appOf(userID)] >= q.cfg.PerApp {
		return errQuotaApp
	}
	if u := q.users[userID]; q.cfg.PerUser > 0 && u != nil && u.allocs >= q.cfg.PerUser {
		return errQuotaUser
	}
	return nil
}

// acquire reserves one allocation for userID.
func (q *quotaBook) acquire(userID string) (*userState, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if err := q.checkLocked(userID); err != nil {
		return nil, err
	}
	u := q.users[userID]
	if u == nil {
		u = &userState{id: userID, app: appOf(userID)}
		if q.userBps > 0 {
			u.up = newBucket(q.userBps)
			u.down = newBucket(q.userBps)
		}
		q.users[userID] = u
	}
	u.allocs++
	q.apps[u.app]++
	q.total++
	return u, nil
}

func (q *quotaBook) release(u *userState) {
	q.mu.Lock()
	defer q.mu.Unlock()
	u.allocs--
	q.total--
	if q.apps[u.app]--; q.apps[u.app] <= 0 {
		delete(q.apps, u.app)
	}
	if u.allocs <= 0 {
		delete(q.users, u.id)
	}
}

// newBucket is a token bucket of bytes: the rate, with a quarter second of
// burst (at least two full-size packets).
func newBucket(bytesPerSec int) *rate.Limiter {
	return rate.NewLimiter(rate.Limit(bytesPerSec), max(bytesPerSec/4, 2*1600))
}

// allowN takes n bytes from both buckets, or none.
func allowN(alloc, user *rate.Limiter, n int, now time.Time) (ok bool, which string) {
	if alloc != nil && !alloc.AllowN(now, n) {
		return false, dropAllocBandwidth
	}
	if user != nil && !user.AllowN(now, n) {
		return false, dropUserBandwidth
	}
	return true, ""
}
