package sdk

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/pkg/waittest"
)

// gatedTransport is a fakeTransport whose login answer waits for gate and
// which counts the logins sent on it.
type gatedTransport struct {
	*fakeTransport
	gate   chan struct{}
	mu     *sync.Mutex
	logins map[string]int
}

func (g *gatedTransport) Send(op imapi.Op, seq uint32, body []byte) error {
	if op == imapi.OpLogin {
		g.mu.Lock()
		g.logins[g.addr]++
		g.mu.Unlock()
		go func() {
			select {
			case <-g.gate:
				_ = g.fakeTransport.Send(op, seq, body)
			case <-g.closed:
			}
		}()
		return nil
	}
	return g.fakeTransport.Send(op, seq, body)
}

// TestRaceLogsInOnlyOnTheWinner: the race is over connections and their
// handshakes; the login is sent on the winner only. A slow login answer
// does not start another candidate's login (two logins of one device: two
// sessions, the second taking over), and a candidate that comes up after
// the winner is closed without a login.
func TestRaceLogsInOnlyOnTheWinner(t *testing.T) {
	t.Run("slow login answer", func(t *testing.T) {
		var mu sync.Mutex
		logins := map[string]int{}
		var dialed []string
		gate := make(chan struct{})
		d := func(ctx context.Context, addr string) (Transport, error) {
			mu.Lock()
			dialed = append(dialed, addr)
			mu.Unlock()
			return &gatedTransport{fakeTransport: newFake(addr, imapi.OK), gate: gate, mu: &mu, logins: logins}, nil
		}
		cfg := testConfig(d, "a", "b")
		cfg.RaceDelay = 20 * time.Millisecond
		// a's login answer comes well after the stagger: before, b was
		// dialed and logged in meanwhile.
		time.AfterFunc(10*cfg.RaceDelay, func() { close(gate) })
		c, _ := startClient(t, cfg)
		if c.SessionID() != "s-a" {
			t.Fatalf("session %q, want the first candidate's", c.SessionID())
		}
		mu.Lock()
		defer mu.Unlock()
		if logins["a"] != 1 || logins["b"] != 0 || len(dialed) != 1 {
			t.Fatalf("logins %v, dialed %v: want one login, on a, and b never dialed", logins, dialed)
		}
	})
	t.Run("late loser", func(t *testing.T) {
		var mu sync.Mutex
		logins := map[string]int{}
		open := make(chan struct{})
		release := make(chan struct{})
		late := make(chan *gatedTransport, 1)
		d := func(ctx context.Context, addr string) (Transport, error) {
			g := &gatedTransport{fakeTransport: newFake(addr, imapi.OK), gate: open, mu: &mu, logins: logins}
			if addr == "slow" {
				<-release // comes up after the winner, whatever the context says
				late <- g
			}
			return g, nil
		}
		close(open)
		cfg := testConfig(d, "slow", "fast")
		cfg.RaceDelay = 20 * time.Millisecond
		c, _ := startClient(t, cfg)
		if c.SessionID() != "s-fast" {
			t.Fatalf("session %q", c.SessionID())
		}
		close(release)
		g := <-late
		waittest.Until(t, 5*time.Second, "the late transport closed", func() bool {
			select {
			case <-g.closed:
				return true
			default:
				return false
			}
		})
		mu.Lock()
		defer mu.Unlock()
		if logins["slow"] != 0 || logins["fast"] != 1 {
			t.Fatalf("logins %v: want one, on the winner", logins)
		}
	})
}

// TestLoginFailureTriesOthers: when the winner's login fails with 503 (the
// core is unreachable from that entry point), the race goes on over the
// candidates not used yet.
func TestLoginFailureTriesOthers(t *testing.T) {
	d := func(ctx context.Context, addr string) (Transport, error) {
		code := imapi.OK
		if addr == "down" {
			code = imapi.ErrUnavailable
		}
		return newFake(addr, code), nil
	}
	c, _ := startClient(t, testConfig(d, "down", "up"))
	if c.SessionID() != "s-up" {
		t.Fatalf("session %q", c.SessionID())
	}
}
