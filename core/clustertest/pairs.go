package clustertest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/sdk"
	"github.com/longlink/longlink/pkg/waittest"
)

// Pairs is SDK clients in pairs, sender s<i> and receiver r<i>, each
// sender sending 1:1 messages to its receiver: the traffic of tests that
// move clients to other gateways or sites (a drain, a site's loss) and
// then check that every acknowledged message was delivered exactly once.
type Pairs struct {
	// Clients by account: s0, r0, s1, r1, …
	Clients map[string]*sdk.Client
	n       int

	mu  sync.Mutex
	got map[string]int // client msg id → deliveries to its receiver

	acked   sync.Map // client msg id → true
	nAcked  atomic.Int64
	stop    chan struct{}
	senders sync.WaitGroup
}

// StartPairs makes the users of n pairs in c and starts their clients;
// config gives the SDK configuration of each (i counts the accounts in
// the order s0, r0, s1, r1, …). The clients reconnect with a short backoff
// (50-500 ms) and are closed when t ends.
func StartPairs(t testing.TB, ctx context.Context, c *Cluster, n int, config func(i int, account, token string) sdk.Config) *Pairs {
	t.Helper()
	var accounts []string
	for i := range n {
		accounts = append(accounts, fmt.Sprintf("s%d", i), fmt.Sprintf("r%d", i))
	}
	tokens, err := c.Users(ctx, accounts...)
	if err != nil {
		t.Fatal(err)
	}
	p := &Pairs{Clients: map[string]*sdk.Client{}, n: n, got: map[string]int{}, stop: make(chan struct{})}
	for i, acc := range accounts {
		cfg := config(i, acc, tokens[acc])
		cfg.BackoffMin, cfg.BackoffMax = 50*time.Millisecond, 500*time.Millisecond
		cl, err := sdk.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		cl.Start()
		t.Cleanup(func() { _ = cl.Close() })
		p.Clients[acc] = cl
		go func() {
			for ev := range cl.Events() {
				if ev.Kind == sdk.EventMessage && ev.Message.From != acc {
					p.mu.Lock()
					p.got[ev.Message.ClientMsgID]++
					p.mu.Unlock()
				}
			}
		}()
	}
	return p
}

// Send starts the senders: s<i> sends to r<i> every interval (waiting for
// each ack, at most 30 s) until Check.
func (p *Pairs) Send(ctx context.Context, every time.Duration) {
	for i := range p.n {
		p.senders.Add(1)
		go func() {
			defer p.senders.Done()
			cl := p.Clients[fmt.Sprintf("s%d", i)]
			for k := 0; ; k++ {
				select {
				case <-p.stop:
					return
				case <-time.After(every):
				}
				id := fmt.Sprintf("s%d-%05d", i, k)
				sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				_, err := cl.Send(sctx, imapi.SendReq{ConvType: imapi.ConvP2P, To: fmt.Sprintf("r%d", i), ClientMsgID: id, Body: []byte(`{"t":1}`)})
				cancel()
				if err == nil {
					p.acked.Store(id, true)
					p.nAcked.Add(1)
				}
			}
		}()
	}
}

// Acked is how many messages were acknowledged so far.
func (p *Pairs) Acked() int64 { return p.nAcked.Load() }

// Check stops the senders, waits (at most timeout) until every acked
// message reached its receiver and checks that each came exactly once.
// It returns how many were acked.
func (p *Pairs) Check(t testing.TB, timeout time.Duration) int {
	t.Helper()
	close(p.stop)
	p.senders.Wait()
	var ids []string
	p.acked.Range(func(k, _ any) bool { ids = append(ids, k.(string)); return true })
	waittest.Until(t, timeout, "every acked message delivered", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, id := range ids {
			if p.got[id] == 0 {
				return false
			}
		}
		return true
	})
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, id := range ids {
		if p.got[id] != 1 {
			t.Errorf("message %s delivered %d times", id, p.got[id])
		}
	}
	t.Logf("%d acked messages, each delivered once", len(ids))
	return len(ids)
}
