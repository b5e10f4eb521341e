package main

import (
	"bytes"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func TestPct(t *testing.T) {
	s := make([]float64, 100)
	for i := range s {
		s[i] = float64(100 - i) // 100..1, unsorted
	}
	for p, want := range map[float64]float64{50: 50, 99: 99, 100: 100, 1: 1} {
		if got := pct(s, p); got != want {
			t.Errorf("pct(%v) = %v, want %v", p, got, want)
		}
	}
	if !math.IsNaN(pct(nil, 50)) {
		t.Error("pct of no samples is not NaN")
	}
}

func TestFrames(t *testing.T) {
	var b bytes.Buffer
	if err := writeFrame(&b, frameMessage, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	typ, p, err := readFrame(&b, nil)
	if err != nil || typ != frameMessage || string(p) != "hello" {
		t.Fatalf("got %q %q %v", typ, p, err)
	}
	huge := []byte{frameBulk, 0x7f, 0xff, 0xff, 0xff}
	if _, _, err := readFrame(bytes.NewReader(huge), nil); !errors.Is(err, errFrameTooLarge) {
		t.Fatalf("oversized frame: %v", err)
	}
	if _, _, err := readFrame(bytes.NewReader([]byte{frameLogin, 0, 0, 0, 9, 1}), nil); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated frame: %v", err)
	}
}

func FuzzReadFrame(f *testing.F) {
	var b bytes.Buffer
	writeFrame(&b, frameLogin, []byte(`{"account":"u1"}`))
	f.Add(b.Bytes())
	f.Add([]byte{frameMessage, 0, 0, 0, 0})
	f.Add([]byte{frameBulk, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		typ, p, err := readFrame(bytes.NewReader(data), nil)
		if err != nil {
			return
		}
		if len(p) > maxFrame || len(data) < 5+len(p) {
			t.Fatalf("frame %q of %d bytes from %d input bytes", typ, len(p), len(data))
		}
	})
}

// TestReport checks that every figure is a well-formed RESULT line for
// tools/bench and that the baseline comes with it.
func TestReport(t *testing.T) {
	m := measurement{ConnectMS: []float64{500, 600}, MessageMS: []float64{180, 700}, BulkBytes: 1e6, BulkSeconds: 10}
	a := measurement{ConnectMS: []float64{300, 400}, MessageMS: []float64{185, 400}, BulkBytes: 5e6, BulkSeconds: 10}
	r, w, _ := os.Pipe()
	stdout := os.Stdout
	os.Stdout = w
	report("standin", "quic", m, a)
	w.Close()
	os.Stdout = stdout
	out, _ := io.ReadAll(r)
	var results []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "RESULT ") {
			if f := strings.Fields(line); len(f) != 4 {
				t.Errorf("malformed %q", line)
			}
			results = append(results, line)
		}
	}
	for _, want := range []string{
		"RESULT standin_connect_login_direct_p99 600.00 ms",
		"RESULT standin_connect_login_quic_p50 300.00 ms",
		"RESULT standin_msg_rtt_p99_reduction_quic 42.86 %",
		"RESULT standin_bulk_direct 0.80 Mbit/s",
		"RESULT standin_bulk_quic 4.00 Mbit/s",
	} {
		if !strings.Contains(string(out), want+"\n") {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
	if len(results) != 13 {
		t.Errorf("%d RESULT lines, want 13", len(results))
	}
}

// TestSplit: a message is late up, down or both by its parts' own medians,
// and late messages less than 300 ms apart are one moment.
func TestSplit(t *testing.T) {
	m := measurement{
		// On time, on time, on time, late up, late down (100 ms after the
		// one before: the same moment), the first on its connection and
		// late up, on time.
		MessageMS:   []float64{180, 182, 181, 300, 290, 400, 183},
		MessageUpMS: []float64{90, 91, 90, 210, 90, 310, 92},
		MessageNth:  []int{0, 1, 2, 3, 4, 0, 1},
		MessageAt:   []int64{0, 200, 400, 1000, 1100, 5000, 5400},
	}
	s, ok := splitOf(m)
	if !ok {
		t.Fatal("no split")
	}
	if s.late != 3 || s.lateUp != 2 || s.lateDown != 1 || s.lateFirst != 1 || s.moments != 2 || s.first != 2 || len(s.rest) != 5 {
		t.Errorf("late %d (up %d, down %d, first %d) in %d moments, %d first, %d rest", s.late, s.lateUp, s.lateDown, s.lateFirst, s.moments, s.first, len(s.rest))
	}
	if d := pct(s.down, 50); d != 91 {
		t.Errorf("down p50 %v, want 91", d)
	}
	if _, ok := splitOf(measurement{MessageMS: []float64{180}}); ok {
		t.Error("a split of messages without stamps")
	}
}

// TestMetricValue: the run reads edge-1's copy counters from its /metrics.
func TestMetricValue(t *testing.T) {
	reg := prometheus.NewRegistry()
	wrapped := prometheus.WrapRegistererWith(prometheus.Labels{"node": "edge-1"}, reg)
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "longlink_edge_bytes_total", Help: "h"}, []string{"listener", "direction"})
	wrapped.MustRegister(c, prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "longlink_edge_link_quic_duplicate_packets_total", Help: "h"},
		func() float64 { return 42 }))
	c.WithLabelValues("link-quic", "down").Add(1000)
	c.WithLabelValues("link", "down").Add(7)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	text, _ := io.ReadAll(resp.Body)
	if v := metricValue(text, "longlink_edge_link_quic_duplicate_packets_total"); v != 42 {
		t.Errorf("copies %v", v)
	}
	if v := metricValue(text, "longlink_edge_bytes_total", `direction="down"`, `listener="link-quic"`); v != 1000 {
		t.Errorf("link-quic down bytes %v", v)
	}
	if v := metricValue(text, "longlink_edge_link_quic_duplicate"); !math.IsNaN(v) {
		t.Errorf("a prefix of a name matched: %v", v)
	}
}

// TestShareWithProbes: a late message counts with the core probe when a late
// core probe message was in flight during it, else with the edge probe when
// a late edge probe message was; messages a probe did not cover count
// nowhere.
func TestShareWithProbes(t *testing.T) {
	core := measurement{
		MessageMS: []float64{5, 5, 90, 5, 5, 5},
		MessageAt: []int64{1000, 1100, 1300, 1500, 1700, 2000},
	}
	edge := measurement{
		MessageMS: []float64{100, 100, 100, 100, 250, 100},
		MessageAt: []int64{1000, 1100, 1300, 1500, 1700, 2000},
	}
	m := measurement{
		// on time (covers the late core probe message), late with the
		// core, late with the edge, late alone, late before the probes
		// ran, on time, on time.
		MessageMS: []float64{180, 300, 300, 300, 300, 181, 182, 183},
		MessageAt: []int64{1200, 1250, 1650, 2000, 0, 1000, 1010, 1020},
	}
	got := shareWithProbes(m, core, edge)
	if want := (probeShare{late: 3, lateCore: 1, lateEdge: 1, onTime: 4, onTimeCore: 1}); got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
}
