package lbs

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/longlink/longlink/lbs/lbsapi"
	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/pkg/metricstest"
	"github.com/longlink/longlink/pkg/waittest"
)

// postReport sends a report as a client at xff would; it returns the
// status code.
func postReport(t testing.TB, l *LBS, query, xff string, body []byte) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+l.ClientAddr().String()+lbsapi.PathReport+"?"+query, bytes.NewReader(body))
	if xff != "" {
		req.Header.Set("X-Forwarded-For", xff)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

func reportBody(attempts ...lbsapi.Attempt) []byte {
	b, _ := json.Marshal(lbsapi.Report{SDK: "go-1.0.0", Attempts: attempts})
	return b
}

// A few reports from a prefix whose users find the nearer entry point slow
// turn the answers for new clients of that prefix, and only that prefix;
// explain says why.
func TestRUMSteersByReports(t *testing.T) {
	reg := prometheus.NewRegistry()
	l := startSingleWith(t, Deps{Registerer: reg}, func(c *Config) { c.RUM.Interval = config.Duration(20 * time.Millisecond) })
	first := func(xff string) string {
		code, a := query(t, l, "appkey=demo", xff)
		if code != 200 || len(a.Link) == 0 {
			t.Fatalf("query from %s: %d %+v", xff, code, a)
		}
		return a.Link[0].ID
	}
	if got := first("101.0.0.77"); got != "edge-sg" {
		t.Fatalf("before any report the nearest comes first: got %s", got)
	}
	slow := reportBody(lbsapi.Attempt{ID: "edge-sg", Ms: 610, Outcome: lbsapi.OutcomeLost},
		lbsapi.Attempt{ID: "edge-fra", Ms: 45, Outcome: lbsapi.OutcomeWon})
	for i := range 3 {
		if code := postReport(t, l, "appkey=demo", fmt.Sprintf("101.0.0.%d", 10+i), slow); code != http.StatusNoContent {
			t.Fatalf("report %d: %d", i, code)
		}
	}
	waittest.Until(t, 5*time.Second, "answers for 101.0.0.0/24 led by edge-fra", func() bool { return first("101.0.0.77") == "edge-fra" })
	if got := first("101.0.1.5"); got != "edge-sg" {
		t.Fatalf("another prefix moved too: %s", got)
	}
	admin := newAdmin(t, l, testAdminToken)
	var ex struct {
		Steps []struct{ Name, Note string }
	}
	if code := admin.json("GET", "/v1/explain?appkey=demo&ip=101.0.0.77", nil, &ex); code != 200 {
		t.Fatalf("explain: %d", code)
	}
	found := false
	for _, s := range ex.Steps {
		if s.Name == "measured" && strings.Contains(s.Note, "measured by users in 101.0.0.0/24") && strings.Contains(s.Note, "edge-fra 45ms 100% ok") {
			found = true
		}
	}
	if !found {
		t.Fatalf("explain does not say the order was measured: %+v", ex.Steps)
	}
	if v := metricstest.Value(t, reg, "longlink_lbs_rum_reports_total", "result", "ok"); v != 3 {
		t.Fatalf("%v reports counted ok", v)
	}
	if v := metricstest.Value(t, reg, "longlink_lbs_rum_samples_total", "result", "accepted"); v != 6 {
		t.Fatalf("%v samples accepted", v)
	}
	if metricstest.Value(t, reg, "longlink_lbs_rum_steered_answers_total") < 1 {
		t.Fatal("steered answers not counted")
	}
	// DNS answers from a resolver of that prefix are steered the same way.
	r := dnsQuery(t, l, "_link._tcp.demo.lbs.test.", dns.TypeSRV, "101.0.0.0/24", true)
	if len(r.Answer) == 0 || r.Answer[0].(*dns.SRV).Target != "edge-fra.ep.lbs.test." {
		t.Fatalf("DNS with ECS 101.0.0.0/24: %v", r.Answer)
	}
}

// Every refusal has its code and is counted; the body's limits hold.
func TestRUMRefusals(t *testing.T) {
	reg := prometheus.NewRegistry()
	l := startSingleWith(t, Deps{Registerer: reg}, func(c *Config) { c.RUM.Rate, c.RUM.Burst = 0.001, 5 })
	good := reportBody(lbsapi.Attempt{ID: "edge-sg", Ms: 40, Outcome: lbsapi.OutcomeWon})
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	secret := "0123456789abcdef0123" // testdata/policy.yaml, app "signed"
	many := make([]lbsapi.Attempt, lbsapi.MaxReportAttempts+1)
	for i := range many {
		many[i] = lbsapi.Attempt{ID: "edge-sg", Ms: 1, Outcome: lbsapi.OutcomeFailed}
	}
	cases := []struct {
		name, query, xff string
		body             []byte
		code             int
		result           string
	}{
		{"ok", "appkey=demo", "101.0.0.1", good, 204, "ok"},
		{"unknown app", "appkey=nope", "101.0.2.1", good, 404, "unknown_app"},
		{"not JSON", "appkey=demo", "101.0.3.1", []byte("{"), 400, "bad_request"},
		{"trailing data", "appkey=demo", "101.0.4.1", append(good, []byte(" {}")...), 400, "bad_request"},
		{"no attempts", "appkey=demo", "101.0.5.1", reportBody(), 400, "bad_request"},
		{"too many attempts", "appkey=demo", "101.0.6.1", reportBody(many...), 400, "bad_request"},
		{"unknown entry point", "appkey=demo", "101.0.7.1", reportBody(lbsapi.Attempt{ID: "nope", Ms: 1, Outcome: "won"}), 400, "bad_request"},
		{"bad outcome", "appkey=demo", "101.0.8.1", reportBody(lbsapi.Attempt{ID: "edge-sg", Ms: 1, Outcome: "maybe"}), 400, "bad_request"},
		{"weblink transport", "appkey=demo", "101.0.15.1", reportBody(lbsapi.Attempt{ID: "edge-sg", Transport: lbsapi.TransportWebLink, Ms: 120, Outcome: "won"}), 204, "ok"},
		{"bad transport", "appkey=demo", "101.0.9.1", reportBody(lbsapi.Attempt{ID: "edge-sg", Transport: "sctp", Ms: 1, Outcome: "won"}), 400, "bad_request"},
		{"time out of range", "appkey=demo", "101.0.10.1", reportBody(lbsapi.Attempt{ID: "edge-sg", Ms: -5, Outcome: "won"}), 400, "bad_request"},
		{"too large", "appkey=demo", "101.0.11.1", bytes.Repeat([]byte(" "), lbsapi.MaxReportBytes+1), 413, "too_large"},
		{"unsigned for a signing app", "appkey=signed", "101.0.12.1", good, 401, "bad_signature"},
		{"wrong signature", "appkey=signed&ts=" + ts + "&sig=" + lbsapi.SignReport(secret, "signed", ts, []byte("other")), "101.0.13.1", good, 401, "bad_signature"},
		{"signed", "appkey=signed&ts=" + ts + "&sig=" + lbsapi.SignReport(secret, "signed", ts, good), "101.0.14.1", good, 204, "ok"},
	}
	want := map[string]float64{}
	for _, c := range cases {
		if code := postReport(t, l, c.query, c.xff, c.body); code != c.code {
			t.Errorf("%s: %d, want %d", c.name, code, c.code)
		}
		want[c.result]++
	}
	// One prefix: its burst of 5, then 429 (the bucket refills at 0.001/s).
	var limited int
	for range 8 {
		if postReport(t, l, "appkey=demo", "198.51.100.7", good) == http.StatusTooManyRequests {
			limited++
		}
	}
	if limited != 3 {
		t.Errorf("%d of 8 reports from one prefix refused, want 3 past a burst of 5", limited)
	}
	want["ok"] += 5
	want["rate_limited"] += 3
	for result, n := range want {
		if v := metricstest.Value(t, reg, "longlink_lbs_rum_reports_total", "result", result); v != n {
			t.Errorf("reports %s: %v, want %v", result, v, n)
		}
	}
	// rum.mode off refuses reports (403) and answers by distance.
	doc := strings.Replace(string(mustRead(t, "testdata/policy.yaml")), "defaults: {count: 2, ttl: 20s}", "defaults: {count: 2, ttl: 20s}\nrum: {mode: \"off\"}", 1)
	if _, err := l.ApplyPolicy(context.Background(), []byte(doc), "test"); err != nil {
		t.Fatal(err)
	}
	if code := postReport(t, l, "appkey=demo", "203.0.113.1", good); code != http.StatusForbidden {
		t.Fatalf("with rum.mode off: %d, want 403", code)
	}
	if v := metricstest.Value(t, reg, "longlink_lbs_rum_reports_total", "result", "disabled"); v != 1 {
		t.Fatalf("disabled: %v", v)
	}
}

// FuzzReport sends arbitrary bodies and parameters to the report handler
// of a member: every answer is one of the documented codes with a JSON
// error, no more samples are taken than the body has attempts, and what
// waits for the next proposal stays within rum.max_pending.
func FuzzReport(f *testing.F) {
	l := unstarted(f)
	l.cfg.RUM.Rate, l.cfg.RUM.Burst, l.cfg.RUM.MaxPending = 1e9, 1e9, 16
	l.rum = newRUMIntake(l.cfg.RUM)
	h := l.clientHandler()
	good := reportBody(lbsapi.Attempt{ID: "edge-sg", Ms: 610, Outcome: lbsapi.OutcomeLost}, lbsapi.Attempt{ID: "edge-fra", Transport: "quic", Ms: 45, Outcome: lbsapi.OutcomeWon})
	f.Add("appkey=demo", "101.0.0.7", good)
	f.Add("appkey=signed&ts=1&sig=00", "9.9.9.9", good)
	f.Add("appkey=demo", "::1", []byte(`{"attempts":[{"id":"core-gw","ms":0,"outcome":"failed"}],"extra":1}`))
	f.Add("appkey=demo", "", []byte(`{"attempts":[{"id":"edge-sg","ms":1e99,"outcome":"won"}]}`))
	f.Add("appkey=demo", "1.1.1.1", []byte(`{"attempts":null}`))
	f.Add("appkey=%zz", "x", []byte(`[]`))
	f.Fuzz(func(t *testing.T, rawQuery, xff string, body []byte) {
		before := metricsSamples(l)
		req := httptest.NewRequest("POST", lbsapi.PathReport, bytes.NewReader(body))
		req.URL.RawQuery = rawQuery
		req.RemoteAddr = "127.0.0.1:5000"
		req.Header.Set("X-Forwarded-For", xff)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		switch w.Code {
		case http.StatusNoContent:
			var rep lbsapi.Report
			if json.Unmarshal(body, &rep) != nil || len(rep.Attempts) == 0 || len(rep.Attempts) > lbsapi.MaxReportAttempts {
				t.Fatalf("took a report that does not decode to 1..%d attempts: %q", lbsapi.MaxReportAttempts, body)
			}
			if got := metricsSamples(l) - before; got != float64(len(rep.Attempts)) {
				t.Fatalf("%v samples counted for %d attempts", got, len(rep.Attempts))
			}
		case http.StatusBadRequest, http.StatusUnauthorized, http.StatusNotFound, http.StatusRequestEntityTooLarge, http.StatusTooManyRequests:
			var e lbsapi.Error
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error == "" {
				t.Fatalf("status %d without a JSON error: %q", w.Code, w.Body.String())
			}
		default:
			t.Fatalf("status %d for %q %q", w.Code, rawQuery, body)
		}
		if n := len(l.rum.pending.Take()); n > 16 {
			t.Fatalf("%d sums pending, bound 16", n)
		}
	})
}

// metricsSamples is the member's count of samples taken (accepted or
// dropped past the pending bound).
func metricsSamples(l *LBS) float64 {
	var sum float64
	for _, c := range []prometheus.Counter{l.m.rumSamplesAccepted, l.m.rumSamplesDropped} {
		var m dto.Metric
		c.Write(&m)
		sum += m.GetCounter().GetValue()
	}
	return sum
}

// Reports given to a follower reach every member's table through raft, so
// every member steers alike; when the leader dies, the survivors keep the
// table and go on learning.
func TestRUMReplicated(t *testing.T) {
	if os.Getenv("LONGLINK_INTEGRATION") == "" {
		t.Skip("integration test: set LONGLINK_INTEGRATION=1")
	}
	ms := startCluster(t)
	ld := leader(t, ms)
	rest := followers(ms, ld)
	firstOn := func(m *member) string {
		code, a := query(t, m.l, "appkey=demo", "101.0.0.77")
		if code != 200 || len(a.Link) == 0 {
			return fmt.Sprintf("status %d", code)
		}
		return a.Link[0].ID
	}
	report := func(m *member, slow, fast string, n int) {
		body := reportBody(lbsapi.Attempt{ID: slow, Ms: 900, Outcome: lbsapi.OutcomeLost}, lbsapi.Attempt{ID: fast, Ms: 40, Outcome: lbsapi.OutcomeWon})
		for i := range n {
			if code := postReport(t, m.l, "appkey=demo", fmt.Sprintf("101.0.0.%d", 20+i), body); code != http.StatusNoContent {
				t.Fatalf("report to %s: %d", m.cfg.NodeID, code)
			}
		}
	}
	report(rest[0], "edge-sg", "edge-fra", 4)
	for _, m := range ms {
		waittest.Until(t, 10*time.Second, m.cfg.NodeID+" steering 101.0.0.0/24 to edge-fra", func() bool { return firstOn(m) == "edge-fra" })
	}
	ld.l.Kill()
	newLeader := leader(t, rest)
	// The new leader has the table: it steers before hearing a report.
	if got := firstOn(newLeader); got != "edge-fra" {
		t.Fatalf("new leader answers %s first", got)
	}
	// The paths changed: edge-sg is the fast one now, and twice as many
	// reports say so as said the opposite.
	report(newLeader, "edge-fra", "edge-sg", 8)
	for _, m := range rest {
		waittest.Until(t, 10*time.Second, m.cfg.NodeID+" steering 101.0.0.0/24 back to edge-sg", func() bool { return firstOn(m) == "edge-sg" })
	}
}
