package debugsrv

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestEndpoints(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "longlink_test_things_total", Help: "Things."})
	reg.MustRegister(c)
	c.Inc()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var checkErr error
	s := New(ln, reg, slog.New(slog.DiscardHandler), func() error { return checkErr })
	s.Start()
	defer s.Shutdown(context.Background())
	base := "http://" + s.Addr().String()
	get := func(path string) (int, string) {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("healthz %d", code)
	}
	if code, _ := get("/readyz"); code != 503 {
		t.Fatalf("readyz before ready: %d", code)
	}
	s.SetReady(true)
	if code, _ := get("/readyz"); code != 200 {
		t.Fatalf("readyz when ready: %d", code)
	}
	checkErr = errors.New("no leader")
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "no leader") {
		t.Fatalf("readyz with failing check: %d %q", code, body)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "longlink_test_things_total 1") {
		t.Fatalf("metrics %d %q", code, body)
	}
	if code, _ := get("/debug/pprof/"); code != 200 {
		t.Fatalf("pprof %d", code)
	}
	if code, _ := get("/debug/freeosmemory"); code != http.StatusMethodNotAllowed {
		t.Fatalf("GET freeosmemory: %d, want 405", code)
	}
	resp, err := http.Post(base+"/debug/freeosmemory", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("POST freeosmemory: %d", resp.StatusCode)
	}
}
