package clustertest_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/longlink/longlink/core/clustertest"
	"github.com/longlink/longlink/core/serverapi"
)

// call sends one signed server API request through gw's front with the
// given nonce and timestamp (a replay reuses both).
func call(t *testing.T, gw *clustertest.Core, app clustertest.App, method, path string, body []byte, nonce string, at time.Time) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+gw.APIAddr+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	serverapi.Sign(req, app.AppKey, app.Secret, nonce, at, body)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestClusterServerAPIState: the server API's replay protection and its
// per-app rate hold for the cluster, not per process. A signed request
// accepted once is refused through every front, by each service node alone
// (the other one killed), and by a restarted node; and two service nodes
// behind two fronts admit no more than the app's rate between them.
func TestClusterServerAPIState(t *testing.T) {
	clustertest.Require(t)
	const rate = 40
	c := clustertest.StartCluster(t, clustertest.ClusterOptions{Gateways: 2, Services: 2,
		Service: clustertest.CoreOptions{Config: map[string]any{"server_api": map[string]any{"app_rate": rate}}}})
	app := c.Apps[0]
	gws, svcs := c.Gateways(), c.Services()

	t.Run("replay", func(t *testing.T) {
		at, body := time.Now(), []byte(`{"account":"once"}`)
		if status, b := call(t, gws[0], app, http.MethodPost, "/v1/users", body, "nonce-once", at); status != http.StatusOK {
			t.Fatalf("first use: %d %s", status, b)
		}
		replayed := func(when string) {
			t.Helper()
			for _, gw := range gws {
				for range 3 {
					status, b := call(t, gw, app, http.MethodPost, "/v1/users", body, "nonce-once", at)
					if status != http.StatusUnauthorized || !strings.Contains(b, "nonce already used") {
						t.Fatalf("%s, through %s: %d %s", when, gw.Name, status, b)
					}
				}
			}
		}
		replayed("both nodes up")
		for i, down := range svcs {
			if err := down.Kill(); err != nil {
				t.Fatal(err)
			}
			replayed(fmt.Sprintf("only %s up", svcs[1-i].Name))
			if err := down.Start(); err != nil {
				t.Fatal(err)
			}
			if err := down.WaitReady(60 * time.Second); err != nil {
				t.Fatal(err)
			}
		}
		// svc-1 was killed and restarted before svc-2 went down: the
		// restarted process refused the replay above, alone.
		replayed("after restarts")
		if status, b := call(t, gws[1], app, http.MethodPost, "/v1/users", []byte(`{"account":"fresh"}`), "nonce-fresh", time.Now()); status != http.StatusOK {
			t.Fatalf("a fresh nonce: %d %s", status, b)
		}
	})

	t.Run("rate", func(t *testing.T) {
		before := make([]float64, len(svcs))
		for i, s := range svcs {
			before[i] = metric(t, s, "longlink_serverapi_requests_total", `code="404"`)
		}
		// Six clients, three per front, ask as fast as they can for 3 s; a
		// 404 (no such user) is an admitted request, a 429 a limited one.
		var mu sync.Mutex
		admitted, limited := 0, 0
		start := time.Now()
		var wg sync.WaitGroup
		for i := range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				gw := gws[i%2]
				for n := 0; time.Since(start) < 3*time.Second; n++ {
					status, b := call(t, gw, app, http.MethodGet, "/v1/users/nobody", nil, fmt.Sprintf("rate-%d-%d", i, n), time.Now())
					mu.Lock()
					switch status {
					case http.StatusNotFound:
						admitted++
					case http.StatusTooManyRequests:
						limited++
					default:
						t.Errorf("status %d %s", status, b)
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		span := time.Since(start).Seconds()
		// At most the budget of each 1 s window the span touches; at least
		// half the rate over its whole windows (the machine is shared).
		if max := rate * (span + 1); float64(admitted) > max {
			t.Fatalf("%d admitted in %.1fs: above the bound %.0f", admitted, span, max)
		}
		if min := 0.5 * rate * (span - 1); float64(admitted) < min || limited == 0 {
			t.Fatalf("%d admitted, %d limited in %.1fs: the limit refuses too much or nothing", admitted, limited, span)
		}
		for i, s := range svcs {
			if d := metric(t, s, "longlink_serverapi_requests_total", `code="404"`) - before[i]; d == 0 {
				t.Fatalf("%s served none of the admitted requests: the test did not spread over nodes", s.Name)
			}
		}
		t.Logf("rate %d/s: %d admitted, %d limited in %.1fs", rate, admitted, limited, span)
	})
}

// metric reads a process's metric (summed over the series with labels).
func metric(t *testing.T, p *clustertest.Core, name string, labels ...string) float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := p.Metric(ctx, name, labels...)
	if err != nil {
		t.Fatalf("%s %s: %v", p.Name, name, err)
	}
	return v
}
