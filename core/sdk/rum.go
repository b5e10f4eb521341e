package sdk

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/longlink/longlink/lbs/lbsapi"
	"github.com/longlink/longlink/lbs/lbsclient"
)

// ConnectReport is what one connect measured: every candidate it raced
// (Config.Reporter). Real-user monitoring: the LBS orders the entry points
// of a client prefix by what its users measured (lbs/README.md).
type ConnectReport struct {
	Attempts []ConnectAttempt
}

// ConnectAttempt is one raced candidate.
type ConnectAttempt struct {
	Addr string
	// Time is from the attempt's start to an open transport (connection
	// and handshake, before the login); for an attempt still going when
	// another won, until then (a lower bound); for one that failed, until
	// it failed.
	Time time.Duration
	// Outcome is lbsapi.OutcomeWon, OutcomeLost or OutcomeFailed.
	Outcome string
}

// raceLog records the attempts of one connect.
type raceLog struct {
	mu      sync.Mutex
	at      []raceEntry
	winner  int // index in at; valid once decided is set
	decided time.Time
}

type raceEntry struct {
	addr       string
	start, end time.Time
	done       bool
	failed     bool
}

// start records an attempt's start and returns its index. A connect
// whose winner's login failed races again over the others: the log keeps
// every attempt, and the last race's winner is the one reported won.
func (l *raceLog) start(addr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.at = append(l.at, raceEntry{addr: addr, start: time.Now()})
	return len(l.at) - 1
}

// dialed records attempt i's transport opened (err nil) or failed.
func (l *raceLog) dialed(i int, err error) {
	l.mu.Lock()
	if e := &l.at[i]; !e.done {
		e.done, e.failed, e.end = true, err != nil, time.Now()
	}
	l.mu.Unlock()
}

func (l *raceLog) won(i int) {
	l.mu.Lock()
	l.winner, l.decided = i, time.Now()
	l.mu.Unlock()
}

// report returns the attempts as they stood when the winner was decided.
func (l *raceLog) report() (ConnectReport, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.at) == 0 {
		return ConnectReport{}, false
	}
	var r ConnectReport
	for i, e := range l.at {
		if e.start.IsZero() {
			continue
		}
		a := ConnectAttempt{Addr: e.addr, Outcome: lbsapi.OutcomeLost}
		switch {
		case i == l.winner:
			a.Outcome, a.Time = lbsapi.OutcomeWon, e.end.Sub(e.start)
			if !e.done {
				a.Time = l.decided.Sub(e.start)
			}
		case e.done && e.failed:
			a.Outcome, a.Time = lbsapi.OutcomeFailed, e.end.Sub(e.start)
		case e.done:
			a.Time = e.end.Sub(e.start) // opened, but its login came later
		default:
			a.Time = l.decided.Sub(e.start)
		}
		r.Attempts = append(r.Attempts, a)
	}
	return r, len(r.Attempts) > 0
}

// ReportOptions tune LBSReporter.
type ReportOptions struct {
	// Sample is the share of connects reported, 0..1. Default 1 (negative:
	// none).
	Sample float64
	// MinInterval is the least time between two reports of this client.
	// Default 30s (negative: no limit).
	MinInterval time.Duration
	// Timeout bounds one report. Default 5s.
	Timeout time.Duration
	// Transport names the dialer's transport in the reports. Default "tcp".
	Transport string
}

// Reporter posts connect reports to the LBS; its Report is a
// Config.Reporter. Safe for concurrent use.
type Reporter struct {
	lc   *lbsclient.Client
	o    ReportOptions
	last atomic.Int64 // unix nanos of the last report sent
	busy atomic.Bool

	// Sent and Failed count reports posted and those that failed.
	Sent, Failed atomic.Int64
	// Done, when set, is called after each report with its error (tests).
	Done func(error)
}

// LBSReporter returns a reporter that posts what each connect measured to
// the LBS through lc (signed with the app's secret when lc has one): the
// entry point ids are the ones of lc's last answer (attempts to addresses
// it does not list are left out), a Sample share of connects at most one
// per MinInterval, one report in flight at most; a report that fails is
// dropped.
func LBSReporter(lc *lbsclient.Client, o ReportOptions) *Reporter {
	if o.Sample == 0 {
		o.Sample = 1
	}
	if o.MinInterval == 0 {
		o.MinInterval = 30 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.Transport == "" {
		o.Transport = lbsapi.TransportTCP
	}
	return &Reporter{lc: lc, o: o}
}

// Report is the Config.Reporter: it returns at once and posts in the
// background.
func (r *Reporter) Report(rep ConnectReport) {
	if r.o.Sample < 1 && rand.Float64() >= r.o.Sample {
		return
	}
	now := time.Now().UnixNano()
	if last := r.last.Load(); r.o.MinInterval > 0 && last != 0 && now-last < int64(r.o.MinInterval) {
		return
	}
	var out lbsapi.Report
	for _, a := range rep.Attempts {
		id, ok := r.lc.EndpointID(a.Addr)
		if !ok || len(out.Attempts) == lbsapi.MaxReportAttempts {
			continue
		}
		ms := min(max(int(a.Time.Milliseconds()), 0), lbsapi.MaxAttemptMs)
		out.Attempts = append(out.Attempts, lbsapi.Attempt{ID: id, Transport: r.o.Transport, Ms: ms, Outcome: a.Outcome})
	}
	if len(out.Attempts) == 0 || !r.busy.CompareAndSwap(false, true) {
		return
	}
	r.last.Store(now)
	go func() {
		defer r.busy.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), r.o.Timeout)
		defer cancel()
		err := r.lc.Report(ctx, out)
		if err != nil {
			r.Failed.Add(1)
		} else {
			r.Sent.Add(1)
		}
		if r.Done != nil {
			r.Done(err)
		}
	}()
}
