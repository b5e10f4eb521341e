package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/longlink/longlink/core/clustertest"
	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/serverapi"
	"github.com/longlink/longlink/pkg/waittest"
)

// siteTraffic is SDK clients on both sites of a two-site deployment,
// half at home in a (a's gateway first, b's second), half in b, each
// sending a 1:1 message to the next client and a group message,
// alternately, every 25 ms (durable, pipelined by the SDK), until stop.
type siteTraffic struct {
	clients []*chaosClient
	stop    chan struct{}
	wg      sync.WaitGroup
}

const siteClients = 8

func startSiteTraffic(t *testing.T, ctx context.Context, s *clustertest.Sites) *siteTraffic {
	t.Helper()
	var accounts []string
	for i := range siteClients {
		accounts = append(accounts, fmt.Sprintf("u%d", i))
	}
	tokens, err := s.SiteB.Users(ctx, accounts...)
	if err != nil {
		t.Fatal(err)
	}
	var g imapi.Group
	if err := s.SiteB.API(ctx, "", http.MethodPost, "/v1/groups", serverapi.GroupCreateReq{Owner: "u0", Name: "all", Members: accounts[1:]}, &g); err != nil {
		t.Fatal(err)
	}
	gwA, gwB := s.SiteA.Gateways()[0], s.SiteB.Gateways()[0]
	tr := &siteTraffic{stop: make(chan struct{})}
	for i, a := range accounts {
		cfg := s.SiteA.SDKConfig(a, tokens[a], gwA, gwB)
		home := "a"
		if i%2 == 1 {
			cfg, home = s.SiteB.SDKConfig(a, tokens[a], gwB, gwA), "b"
		}
		cfg.BackoffMin, cfg.BackoffMax = 50*time.Millisecond, 500*time.Millisecond
		tr.clients = append(tr.clients, startChaosClient(t, ctx, cfg, home))
	}
	for i, cl := range tr.clients {
		peer := accounts[(i+1)%siteClients]
		tr.wg.Add(1)
		go func() {
			defer tr.wg.Done()
			tick := time.NewTicker(25 * time.Millisecond)
			defer tick.Stop()
			for k := 0; ; k++ {
				select {
				case <-tr.stop:
					return
				case <-tick.C:
				}
				req := imapi.SendReq{ConvType: imapi.ConvP2P, To: peer, Type: "text",
					ClientMsgID: fmt.Sprintf("%s-p-%05d", cl.account, k), Body: json.RawMessage(`{"t":1}`)}
				if k%2 == 1 {
					req.ConvType, req.To, req.ClientMsgID = imapi.ConvGroup, g.GroupID, fmt.Sprintf("%s-g-%05d", cl.account, k)
				}
				cl.send(t, &req)
			}
		}()
	}
	return tr
}

// startSitesWithTraffic starts the two-site deployment and the traffic on
// it; ctx bounds the rest of the test (4 minutes).
func startSitesWithTraffic(t *testing.T) (*clustertest.Sites, context.Context, *siteTraffic) {
	t.Helper()
	clustertest.Require(t)
	start := time.Now()
	s := clustertest.StartSites(t, clustertest.SitesOptions{})
	t.Logf("two sites up in %v", time.Since(start).Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel)
	return s, ctx, startSiteTraffic(t, ctx, s)
}

// Stop ends the traffic and checks the ledger (checkDurable) and that the
// traffic ran (500 acks at least).
func (tr *siteTraffic) Stop(t *testing.T, ctx context.Context, pg *clustertest.Postgres) {
	t.Helper()
	close(tr.stop)
	tr.wg.Wait()
	total := checkDurable(t, ctx, tr.clients, pg, func(i, to int, id string) bool {
		return strings.Contains(id, "-g-") || (strings.Contains(id, "-p-") && (i+1)%siteClients == to)
	})
	if total < 500 {
		t.Fatalf("only %d messages acknowledged: the traffic did not run", total)
	}
	t.Logf("%d messages acknowledged, each stored and delivered once", total)
}

// acksBetween counts the acks clients at home (a, b or "" for all) got
// in [from, to), and of them those of messages queued at or after from.
func (tr *siteTraffic) acksBetween(home string, from, to time.Time) (all, sentAfter int) {
	for _, cl := range tr.clients {
		if home != "" && cl.home != home {
			continue
		}
		cl.mu.Lock()
		for id, at := range cl.ackAt {
			if !at.Before(from) && at.Before(to) {
				all++
				if !cl.sentAt[id].Before(from) {
					sentAfter++
				}
			}
		}
		cl.mu.Unlock()
	}
	return all, sentAfter
}

// waitServed waits until every client got an ack after since.
func (tr *siteTraffic) waitServed(t *testing.T, since time.Time, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for _, cl := range tr.clients {
		for cl.ackedAfter(since) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%s (home %s) got no ack within %v of %s", cl.account, cl.home, timeout, since.Format("15:04:05.000"))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// TestSiteFailover loses site a while SDK clients on both sites send: every
// process of a (its NATS servers and JetStream server, the PostgreSQL
// primary, its gateway and service node) is SIGKILLed at once, and b's
// synchronous standby is promoted as a failover tool would (pg_promote).
// Afterwards every acknowledged message is in PostgreSQL once with its
// acked seq and delivered to each receiver exactly once, in its sender's
// order; a's clients are served by b again, through b's gateway, within
// the bound.
func TestSiteFailover(t *testing.T) {
	s, ctx, tr := startSitesWithTraffic(t)
	time.Sleep(5 * time.Second) // traffic before the fault (not an ordering wait)

	killAt := time.Now()
	if err := s.Kill(s.A); err != nil {
		t.Fatal(err)
	}
	killed := time.Since(killAt)
	if err := s.PG.Standby.Promote(); err != nil {
		t.Fatal(err)
	}
	promoted := time.Since(killAt)
	tr.waitServed(t, killAt.Add(promoted), 30*time.Second)
	var first, worst, reconnect time.Duration
	for _, cl := range tr.clients {
		d := cl.ackedAfter(killAt.Add(promoted))
		d += promoted
		if first == 0 || d < first {
			first = d
		}
		worst = max(worst, d)
		if cl.home == "a" {
			reconnect = max(reconnect, cl.reconnectedAfter(killAt))
		}
	}
	t.Logf("site a killed in %v, b's standby promoted %v after the kill; first ack after it %v, every client acked again %v, a's clients reconnected to b within %v",
		killed.Round(time.Millisecond), promoted.Round(time.Millisecond), first.Round(time.Millisecond), worst.Round(time.Millisecond), reconnect.Round(time.Millisecond))
	if worst > 20*time.Second {
		t.Errorf("clients served again %v after the site's loss", worst)
	}
	time.Sleep(3 * time.Second) // traffic on site b alone
	tr.Stop(t, ctx, s.PG)
}

// TestSitePartition cuts the link between sites a and b (a partition, not
// a kill: packets are dropped silently; the witness w still reaches both)
// while SDK clients on both sites send, for 8 s, then heals it. While cut,
// no write is accepted on either side: a's primary cannot commit without
// its synchronous standby in b, and b has no writable server (nobody
// promotes: the failover tool acts on a site's loss, not on a cut link).
// After healing the standby streams synchronously again, every NATS
// server is healthy, every client is served again, and every acked
// message is stored and delivered once, in order.
func TestSitePartition(t *testing.T) {
	s, ctx, tr := startSitesWithTraffic(t)
	time.Sleep(4 * time.Second) // traffic before the fault (not an ordering wait)

	if err := s.Cut(s.A, s.B, true); err != nil {
		t.Fatal(err)
	}
	cutAt := time.Now()
	time.Sleep(8 * time.Second) // the partition lasts (not an ordering wait)
	healAt := time.Now()
	if err := s.Cut(s.A, s.B, false); err != nil {
		t.Fatal(err)
	}
	// A message sent once the link was cut cannot be committed before it
	// heals. Acks of messages sent before may still arrive (commits done
	// when the link went, answered late on a loaded machine).
	allA, ackA := tr.acksBetween("a", cutAt, healAt)
	allB, ackB := tr.acksBetween("b", cutAt, healAt)
	t.Logf("acks while cut: site a's clients %d, site b's %d (of messages sent before the cut: %d, %d)", ackA, ackB, allA-ackA, allB-ackB)
	if ackA > 0 || ackB > 0 {
		t.Errorf("writes accepted while the sites were cut: a %d, b %d", ackA, ackB)
	}
	if rec, err := s.PG.Standby.Scalar("SELECT pg_is_in_recovery()::text"); err != nil || rec != "true" {
		t.Fatalf("b's standby in recovery: %q, %v", rec, err)
	}

	tr.waitServed(t, healAt, 60*time.Second)
	var worst time.Duration
	for _, cl := range tr.clients {
		worst = max(worst, cl.ackedAfter(healAt))
	}
	t.Logf("every client acked again within %v of healing", worst.Round(time.Millisecond))
	waittest.Until(t, 30*time.Second, "b's standby streaming synchronously again", func() bool {
		st, err := s.PG.Primary.Scalar("SELECT string_agg(sync_state, ',') FROM pg_stat_replication")
		return err == nil && st == "sync"
	})
	for _, n := range []*clustertest.NATS{s.SiteA.NATS, s.SiteB.NATS, s.JS} {
		for _, node := range n.Nodes {
			if err := node.WaitHealthy(30 * time.Second); err != nil {
				t.Fatal(err)
			}
		}
	}
	time.Sleep(2 * time.Second) // traffic over the healed link
	tr.Stop(t, ctx, s.PG)
}
