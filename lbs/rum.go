package lbs

import (
	"bytes"
	"context"
	"crypto/hmac"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"golang.org/x/time/rate"

	"github.com/longlink/longlink/lbs/internal/engine"
	"github.com/longlink/longlink/lbs/internal/model"
	"github.com/longlink/longlink/lbs/internal/rum"
	"github.com/longlink/longlink/lbs/internal/state"
	"github.com/longlink/longlink/lbs/lbsapi"
)

// Steering by what users measure (README "Steering by measurements"): SDKs
// report the candidates they raced; this member checks and bounds the
// reports, sums them per (client prefix, entry point) and proposes the sums
// every rum.interval; raft applies them to every member's table; answers
// order the candidates a prefix measured by what it measured.

// rumIntake is this member's side of it: limits and the pending sums.
type rumIntake struct {
	perPrefix *rateLimiter
	all       *rate.Limiter
	pending   *rum.Accumulator
}

func newRUMIntake(c RUMIntake) *rumIntake {
	return &rumIntake{
		perPrefix: newRateLimiter(c.Rate, c.Burst, c.MaxPrefixes),
		all:       rate.NewLimiter(rate.Limit(c.MaxRate), max(int(c.MaxRate), 1)),
		pending:   rum.NewAccumulator(c.MaxPending),
	}
}

// maxBatchItems bounds one proposed command (a raft log entry).
const maxBatchItems = 4096

// handleReport takes POST /v1/rum: 204 when taken (samples beyond the
// pending bound are dropped and counted, not refused), else 400, 401, 403
// (rum.mode off), 404, 413 or 429 with Retry-After.
func (l *LBS) handleReport(w http.ResponseWriter, r *http.Request) {
	refuse := func(code int, result, msg string) {
		l.m.rumReports.WithLabelValues(result).Inc()
		if code == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "60")
		}
		writeErr(w, code, msg)
	}
	ip := l.clientIP(r)
	if !ip.IsValid() {
		refuse(http.StatusBadRequest, "bad_request", "no client address")
		return
	}
	// Rates first: a flood costs a map lookup each, not a body read.
	if !l.rum.all.Allow() || !l.rum.perPrefix.allow(ip) {
		refuse(http.StatusTooManyRequests, "rate_limited", "too many reports")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, lbsapi.MaxReportBytes))
	if err != nil {
		refuse(http.StatusRequestEntityTooLarge, "too_large", "report larger than "+strconv.Itoa(lbsapi.MaxReportBytes)+" bytes")
		return
	}
	q := r.URL.Query()
	appkey, ts := q.Get("appkey"), q.Get("ts")
	snap := l.fsm.Current()
	if !snap.Engine.HasApp(appkey) {
		refuse(http.StatusNotFound, "unknown_app", "unknown appkey")
		return
	}
	if secret := snap.Engine.SigningSecret(appkey); secret != "" {
		n, perr := strconv.ParseInt(ts, 10, 64)
		if perr != nil || time.Since(time.Unix(n, 0)).Abs() > 5*time.Minute ||
			!hmac.Equal([]byte(q.Get("sig")), []byte(lbsapi.SignReport(secret, appkey, ts, body))) {
			refuse(http.StatusUnauthorized, "bad_signature", "bad or missing report signature")
			return
		}
	}
	settings := snap.Engine.RUM()
	if settings.Mode == model.RUMOff {
		refuse(http.StatusForbidden, "disabled", "reports are off (policy rum.mode)")
		return
	}
	samples, err := reportSamples(snap.Engine, settings, body, ip)
	if err != nil {
		refuse(http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	for _, s := range samples {
		if l.rum.pending.Add(s) {
			l.m.rumSamplesAccepted.Inc()
		} else {
			l.m.rumSamplesDropped.Inc()
		}
	}
	l.m.rumReports.WithLabelValues("ok").Inc()
	w.WriteHeader(http.StatusNoContent)
}

// reportSamples decodes and checks a report: every attempt names a client
// entry point of the policy, a known transport and outcome, and a time in
// range. The prefix is the reporter's address, never the body's say.
func reportSamples(e *engine.Engine, settings model.RUM, body []byte, ip netip.Addr) ([]rum.Sample, error) {
	var rep lbsapi.Report
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&rep); err != nil {
		return nil, errors.New("report: " + err.Error())
	}
	if dec.More() {
		return nil, errors.New("report: trailing data")
	}
	if len(rep.Attempts) == 0 || len(rep.Attempts) > lbsapi.MaxReportAttempts {
		return nil, errors.New("report: 1.." + strconv.Itoa(lbsapi.MaxReportAttempts) + " attempts")
	}
	prefix := rum.Prefix(settings, ip)
	out := make([]rum.Sample, 0, len(rep.Attempts))
	for i, a := range rep.Attempts {
		c, ok := e.EntryPoint(a.ID)
		switch {
		case !ok || model.IsTunnelKind(c.EP.Kind):
			return nil, errors.New("report: attempts[" + strconv.Itoa(i) + "].id: not a client entry point")
		case a.Transport != "" && a.Transport != lbsapi.TransportTCP && a.Transport != lbsapi.TransportQUIC && a.Transport != lbsapi.TransportWebLink:
			return nil, errors.New("report: attempts[" + strconv.Itoa(i) + "].transport: not tcp, quic or weblink")
		case a.Ms < 0 || a.Ms > lbsapi.MaxAttemptMs:
			return nil, errors.New("report: attempts[" + strconv.Itoa(i) + "].ms: out of range")
		case a.Outcome != lbsapi.OutcomeWon && a.Outcome != lbsapi.OutcomeLost && a.Outcome != lbsapi.OutcomeFailed:
			return nil, errors.New("report: attempts[" + strconv.Itoa(i) + "].outcome: not won, lost or failed")
		}
		out = append(out, rum.Sample{Prefix: prefix, EP: a.ID, Ms: float64(a.Ms), OK: a.Outcome != lbsapi.OutcomeFailed})
	}
	return out, nil
}

// proposeRUM sends what this member gathered to the cluster every
// interval, in commands of at most maxBatchItems sums. A batch that fails
// is dropped and counted: the next reports make up for it.
func (l *LBS) proposeRUM() {
	defer l.wg.Done()
	t := time.NewTicker(l.cfg.RUM.Interval.D())
	defer t.Stop()
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-t.C:
		}
		l.m.rumPrefixes.Set(float64(l.fsm.RUM().Len()))
		items := l.rum.pending.Take()
		for len(items) > 0 {
			n := min(len(items), maxBatchItems)
			ctx, cancel := context.WithTimeout(l.ctx, l.cfg.RUM.Interval.D()+5*time.Second)
			_, err := l.propose(ctx, &state.Command{Op: state.OpRUM, Who: "system:rum", RUM: &rum.Batch{Items: items[:n]}})
			cancel()
			if err != nil {
				l.m.rumBatches.WithLabelValues("error").Inc()
				l.log.Debug("rum batch not replicated", "items", n, "err", err)
			} else {
				l.m.rumBatches.WithLabelValues("ok").Inc()
			}
			items = items[n:]
		}
	}
}

// measured fills the request's measurements from the table, for the
// client's prefix.
func (l *LBS) measured(snap *state.Snapshot, req *engine.Request) {
	if !req.Client.IsValid() {
		return
	}
	s := snap.Engine.RUM()
	if s.Mode == model.RUMOff {
		return
	}
	req.MeasuredPrefix = rum.Prefix(s, req.Client)
	req.Measured = l.fsm.RUM().Lookup(req.MeasuredPrefix, time.Now(), s.HalfLife.D(), req.Measured[:0])
}
