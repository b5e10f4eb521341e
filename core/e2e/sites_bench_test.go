package e2e

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/longlink/longlink/core/clustertest"
	"github.com/longlink/longlink/core/sdk"
)

// The two-site figures (tools/bench site-failover, site-sync-cost): the
// deployment of clustertest.StartSites, load from SDK clients in this
// process.

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// siteUsers creates accounts through c's server API front, 16 at a time.
func siteUsers(b *testing.B, ctx context.Context, c *clustertest.Cluster, accounts []string) map[string]string {
	b.Helper()
	out := map[string]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	var failed atomic.Value
	chunk := (len(accounts) + 15) / 16
	for i := 0; i < len(accounts); i += chunk {
		part := accounts[i:min(i+chunk, len(accounts))]
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok, err := c.Users(ctx, part...)
			if err != nil {
				failed.Store(err)
				return
			}
			mu.Lock()
			for k, v := range tok {
				out[k] = v
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	return out
}

// idleClient is a logged-in SDK client that only keeps its session: when
// it was last connected again after being down.
type idleClient struct {
	cl   *sdk.Client
	mu   sync.Mutex
	down bool
	back time.Time // connected again, after having been down
}

func startIdle(cfg sdk.Config) (*idleClient, error) {
	cl, err := sdk.New(cfg)
	if err != nil {
		return nil, err
	}
	c := &idleClient{cl: cl}
	cl.Start()
	go func() {
		for ev := range cl.Events() {
			if ev.Kind != sdk.EventState {
				continue
			}
			c.mu.Lock()
			if ev.State == sdk.StateConnected {
				if c.down {
					c.back, c.down = time.Now(), false
				}
			} else {
				c.down = true
			}
			c.mu.Unlock()
		}
	}()
	return c, nil
}

func (c *idleClient) backAfter(t time.Time) (time.Duration, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.down || c.back.Before(t) {
		return 0, false
	}
	return c.back.Sub(t), true
}

// BenchmarkSiteFailover: LONGLINK_BENCH_SITE_CLIENTS (default 5000) idle
// SDK clients logged in, half at home in site a, half in b, and a durable
// 1:1 load (20 pairs at home in a, 100 msg/s); every process of site a is
// SIGKILLed at once and b's standby promoted at once (the failover tool's
// detection time is not in the figures). Figures: the time from the kill
// to the first send acknowledged (served by site b), to 99% and to all of
// site a's clients logged in again at b, and acked messages lost.
func BenchmarkSiteFailover(b *testing.B) {
	benchRequire(b)
	n := envInt("LONGLINK_BENCH_SITE_CLIENTS", 5000)
	start := time.Now()
	// Every client comes from this process's address.
	s := clustertest.StartSites(b, clustertest.SitesOptions{
		Gateway: clustertest.CoreOptions{Config: map[string]any{"gateway": map[string]any{"max_connections_per_ip": -1}}}})
	b.Logf("two sites up in %v", time.Since(start).Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	gwA, gwB := s.SiteA.Gateways()[0], s.SiteB.Gateways()[0]

	var accounts []string
	for i := range n {
		accounts = append(accounts, fmt.Sprintf("i%d", i))
	}
	t0 := time.Now()
	tokens := siteUsers(b, ctx, s.SiteB, accounts)
	b.Logf("%d accounts created in %v", n, time.Since(t0).Round(time.Millisecond))
	t0 = time.Now()
	clients := make([]*idleClient, n)
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	var failed atomic.Int64
	for i, a := range accounts {
		cfg := s.SiteA.SDKConfig(a, tokens[a], gwA, gwB)
		if i%2 == 1 {
			cfg = s.SiteB.SDKConfig(a, tokens[a], gwB, gwA)
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := startIdle(cfg)
			if err != nil {
				failed.Add(1)
				return
			}
			clients[i] = c
			wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
			defer cancel()
			if c.cl.WaitConnected(wctx) != nil {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	b.Cleanup(func() {
		for _, c := range clients {
			if c != nil {
				_ = c.cl.Close()
			}
		}
	})
	if failed.Load() > 0 {
		b.Fatalf("%d of %d clients did not log in", failed.Load(), n)
	}
	b.Logf("%d clients logged in in %v", n, time.Since(t0).Round(time.Millisecond))

	g := newLoadGen(b, ctx, s.SiteA, "l", 20, gwA, gwB)
	g.run(100)
	time.Sleep(5 * time.Second) // steady load before the fault

	killAt := time.Now()
	if err := s.Kill(s.A); err != nil {
		b.Fatal(err)
	}
	killed := time.Since(killAt)
	if err := s.PG.Standby.Promote(); err != nil {
		b.Fatal(err)
	}
	promoted := time.Since(killAt)
	b.Logf("site a's processes gone %v after the kill, b promoted %v after it", killed.Round(time.Millisecond), promoted.Round(time.Millisecond))
	var affected []*idleClient
	for i, c := range clients {
		if i%2 == 0 {
			affected = append(affected, c)
		}
	}
	backTimes := func() []time.Duration {
		var out []time.Duration
		for _, c := range affected {
			if d, ok := c.backAfter(killAt); ok {
				out = append(out, d)
			}
		}
		return out
	}
	deadline := time.Now().Add(3 * time.Minute)
	for len(backTimes()) < len(affected) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	back := backTimes()
	time.Sleep(3 * time.Second) // load on site b alone
	g.halt()
	g.wait(30 * time.Second)

	// The first send acknowledged after the kill, and acked sends lost.
	var first time.Duration
	acked := map[string]bool{}
	g.mu.Lock()
	for id, m := range g.msgs {
		if m.acked.IsZero() {
			continue
		}
		acked[id] = true
		if m.acked.After(killAt) && (first == 0 || m.acked.Sub(killAt) < first) {
			first = m.acked.Sub(killAt)
		}
	}
	g.mu.Unlock()
	db, err := s.PG.Open()
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, `SELECT client_msg_id FROM messages WHERE sender LIKE 'l%'`)
	if err != nil {
		b.Fatal(err)
	}
	stored := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			b.Fatal(err)
		}
		stored[id] = true
	}
	rows.Close()
	lost := 0
	for id := range acked {
		if !stored[id] {
			lost++
		}
	}
	q99 := time.Duration(0)
	if len(back) >= (len(affected)*99+99)/100 {
		q99 = quantile(back, 0.99)
	}
	all := time.Duration(0)
	if len(back) == len(affected) {
		all = quantile(back, 1)
	}
	b.Logf("%d clients (%d at site a); kill → promoted %v, first ack %v, %d/%d of a's clients back (99%% %v, all %v); %d acked, %d lost",
		n, len(affected), promoted.Round(time.Millisecond), first.Round(time.Millisecond), len(back), len(affected), q99.Round(time.Millisecond), all.Round(time.Millisecond), len(acked), lost)
	fmt.Printf("RESULT site_failover_clients %d clients (%d at the lost site)\n", n, len(affected))
	fmt.Printf("RESULT site_failover_promoted %.0f ms (pg_promote issued at once after the kill)\n", ms(promoted))
	fmt.Printf("RESULT site_failover_first_request_served_by_b %.0f ms\n", ms(first))
	if q99 > 0 {
		fmt.Printf("RESULT site_failover_99pct_clients_back %.2f s\n", q99.Seconds())
	} else {
		fmt.Printf("RESULT site_failover_99pct_clients_back none (%d of %d back within 3 min)\n", len(back), len(affected))
	}
	if all > 0 {
		fmt.Printf("RESULT site_failover_all_clients_back %.2f s\n", all.Seconds())
	}
	fmt.Printf("RESULT site_failover_acked_lost %d messages (of %d acked)\n", lost, len(acked))
}

// BenchmarkSiteSyncCost: the cost of the synchronous standby. The same
// two-site deployment twice in one run, its standby asynchronous and then
// synchronous (1 ms each way between the sites), with 20 pairs at home in
// site a, where the primary is, sending durable 1:1 messages at 200 msg/s:
// send → ack (the durable commit) and send → delivery, p50 and p99.
func BenchmarkSiteSyncCost(b *testing.B) {
	benchRequire(b)
	for _, async := range []bool{true, false} {
		name := "sync"
		if async {
			name = "async"
		}
		// A sub-benchmark each: its deployment is stopped before the next.
		b.Run(name, func(b *testing.B) {
			s := clustertest.StartSites(b, clustertest.SitesOptions{Async: async})
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			gwA := s.SiteA.Gateways()[0]
			g := newLoadGen(b, ctx, s.SiteA, "s"+name, 20, gwA)
			g.run(200)
			time.Sleep(3 * time.Second) // warm-up
			from := time.Now()
			time.Sleep(15 * time.Second)
			to := time.Now()
			g.halt()
			g.wait(15 * time.Second)
			var acks, dels []time.Duration
			lost := 0
			for _, m := range g.window(from, to) {
				if m.delivered.IsZero() || m.acked.IsZero() {
					lost++
					continue
				}
				acks = append(acks, m.acked.Sub(m.sent))
				dels = append(dels, m.delivered.Sub(m.sent))
			}
			rtt, _ := s.PG.Primary.Scalar("SELECT COALESCE(max(extract(epoch from write_lag) * 1000), 0)::text FROM pg_stat_replication")
			b.Logf("%s standby: %d messages, ack p50 %v p99 %v, delivery p50 %v p99 %v, undelivered %d (write_lag %s ms)", name, len(acks),
				quantile(acks, 0.5), quantile(acks, 0.99), quantile(dels, 0.5), quantile(dels, 0.99), lost, strings.TrimSpace(rtt))
			fmt.Printf("RESULT site_%s_standby_ack_p50 %.2f ms\n", name, ms(quantile(acks, 0.5)))
			fmt.Printf("RESULT site_%s_standby_ack_p99 %.2f ms\n", name, ms(quantile(acks, 0.99)))
			fmt.Printf("RESULT site_%s_standby_delivery_p50 %.2f ms\n", name, ms(quantile(dels, 0.5)))
			fmt.Printf("RESULT site_%s_standby_delivery_p99 %.2f ms\n", name, ms(quantile(dels, 0.99)))
			fmt.Printf("RESULT site_%s_standby_undelivered %d messages\n", name, lost)
		})
	}
}
