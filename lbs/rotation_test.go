package lbs

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/longlink/longlink/lbs/lbsclient"
	"github.com/longlink/longlink/pkg/waittest"
)

// Entry rotation under load: clients of two apps keep asking (their LBS
// client answers from its cache and refreshes within the TTL); rotating one
// app moves every one of its clients to the reserve entries within the TTL,
// spread over the last part of it (no storm), while the other app's clients
// keep their entries; DNS answers and explain follow; moving back works the
// same way.
func TestRotateUnderLoad(t *testing.T) {
	l := startSingleWith(t, Deps{}, func(c *Config) { c.InitialPolicy = "testdata/rotation.yaml" })
	const ttl = 2 * time.Second // testdata/rotation.yaml
	admin := newAdmin(t, l, testAdminToken)
	type client struct {
		app   string
		lc    *lbsclient.Client
		mu    sync.Mutex
		moved time.Time // first answer from the reserve
		back  time.Time // first answer from the usual pool after it
		bad   string    // an answer that should not have been
	}
	reserve := map[string]bool{"vr-1": true, "vr-2": true}
	var clients []*client
	for i := range 60 {
		app := "victim"
		switch {
		case i%3 == 1:
			app = "bystander"
		case i%6 == 2:
			app = "victim2" // same pools: an app group moves together
		}
		lc, err := lbsclient.New(lbsclient.Config{Servers: []string{"http://" + l.ClientAddr().String()}, AppKey: app}, &http.Client{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, &client{app: app, lc: lc})
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var rotatedAt, unrotatedAt time.Time
	var phase sync.Mutex
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(i) * 10 * time.Millisecond) // clients arrive over 0.6 s
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			for ctx.Err() == nil {
				a, err := c.lc.Resolve(ctx)
				if err == nil && len(a.Link) > 0 {
					ids := make([]string, len(a.Link))
					for j, ep := range a.Link {
						ids[j] = ep.ID
					}
					now := time.Now()
					inReserve := reserve[ids[0]]
					c.mu.Lock()
					switch {
					case c.app == "bystander" && !(slices.Contains([]string{"sh-1", "sh-2"}, ids[0])):
						c.bad = strings.Join(ids, ",")
					case c.app != "bystander" && inReserve && c.moved.IsZero():
						c.moved = now
						if slices.Contains(ids, "core-gw") {
							c.bad = "rotated answer with the fallback: " + strings.Join(ids, ",")
						}
					case c.app != "bystander" && !inReserve && !c.moved.IsZero() && c.back.IsZero():
						c.back = now
					}
					c.mu.Unlock()
				}
				select {
				case <-ctx.Done():
				case <-tick.C:
				}
			}
		}()
	}
	defer func() { cancel(); wg.Wait() }()
	time.Sleep(3 * ttl) // every client has its answer and refreshed it at least once
	phase.Lock()
	if code := admin.json("POST", "/v1/apps/plain/rotate", nil, nil); code != http.StatusConflict {
		t.Fatalf("rotate an app without reserve pools: %d", code)
	}
	if code := admin.json("POST", "/v1/apps/victim/rotate", []byte(`{"reason":"syn flood on vm-1"}`), nil); code != 200 {
		t.Fatalf("rotate victim: %d", code)
	}
	if code := admin.json("POST", "/v1/apps/victim2/rotate", []byte(`{"reason":"syn flood on vm-1"}`), nil); code != 200 {
		t.Fatalf("rotate victim2: %d", code)
	}
	rotatedAt = time.Now()
	phase.Unlock()
	if code := admin.json("POST", "/v1/apps/nosuch/rotate", nil, nil); code != 404 {
		t.Fatalf("rotate an unknown app: %d", code)
	}
	victims := func() []*client {
		var out []*client
		for _, c := range clients {
			if c.app != "bystander" {
				out = append(out, c)
			}
		}
		return out
	}()
	waittest.Until(t, 3*ttl, "every victim client on the reserve", func() bool {
		for _, c := range victims {
			c.mu.Lock()
			m := c.moved
			c.mu.Unlock()
			if m.IsZero() {
				return false
			}
		}
		return true
	})
	first, last := time.Time{}, time.Time{}
	for _, c := range victims {
		c.mu.Lock()
		m := c.moved
		c.mu.Unlock()
		if first.IsZero() || m.Before(first) {
			first = m
		}
		if m.After(last) {
			last = m
		}
	}
	// Within the TTL (plus one polling interval and the fetch), spread
	// over the last quarter of it rather than all at once.
	if d := last.Sub(rotatedAt); d > ttl+300*time.Millisecond {
		t.Fatalf("the last victim client moved %v after the rotation (TTL %v)", d, ttl)
	}
	if spread := last.Sub(first); spread < ttl/8 {
		t.Fatalf("victim clients moved within %v of each other: a storm", spread)
	}
	t.Logf("victim clients moved %v..%v after the rotation", first.Sub(rotatedAt), last.Sub(rotatedAt))
	// DNS and explain say the same.
	r := dnsQuery(t, l, "_link._tcp.victim.lbs.test.", dns.TypeSRV, "", true)
	for _, rr := range r.Answer {
		if tg := rr.(*dns.SRV).Target; !strings.HasPrefix(tg, "vr-") {
			t.Fatalf("DNS answer for a rotated app: %s", tg)
		}
	}
	var ex struct{ Steps []struct{ Name, Note string } }
	if code := admin.json("GET", "/v1/explain?appkey=victim&ip=8.8.8.8", nil, &ex); code != 200 || !strings.Contains(ex.Steps[1].Note, "syn flood on vm-1") {
		t.Fatalf("explain: %d %+v", code, ex.Steps)
	}
	var rot map[string]struct{ Who, Why string }
	if code := admin.json("GET", "/v1/rotations", nil, &rot); code != 200 || len(rot) != 2 || rot["victim"].Why != "syn flood on vm-1" {
		t.Fatalf("rotations: %d %+v", code, rot)
	}
	// Back.
	unrotatedAt = time.Now()
	for _, app := range []string{"victim", "victim2"} {
		if code := admin.json("POST", "/v1/apps/"+app+"/unrotate", nil, nil); code != 200 {
			t.Fatalf("unrotate %s: %d", app, code)
		}
	}
	waittest.Until(t, 3*ttl, "every victim client back", func() bool {
		for _, c := range victims {
			c.mu.Lock()
			b := c.back
			c.mu.Unlock()
			if b.IsZero() {
				return false
			}
		}
		return true
	})
	for _, c := range victims {
		if d := c.back.Sub(unrotatedAt); d > ttl+300*time.Millisecond {
			t.Fatalf("a victim client moved back %v after (TTL %v)", d, ttl)
		}
	}
	cancel()
	wg.Wait()
	for _, c := range clients {
		if c.bad != "" {
			t.Fatalf("%s client got %s", c.app, c.bad)
		}
	}
}
