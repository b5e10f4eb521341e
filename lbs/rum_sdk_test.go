package lbs

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/sdk"
	"github.com/longlink/longlink/lbs/lbsclient"
	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/pkg/waittest"
)

// xffTransport makes the SDK's LBS requests come from a client at ip (the
// test's member trusts loopback's X-Forwarded-For).
type xffTransport struct{ ip string }

func (x xffTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-Forwarded-For", x.ip)
	return http.DefaultTransport.RoundTrip(r)
}

// loginTransport answers the login at once: an entry point that took the
// connection.
type loginTransport struct {
	mu     sync.Mutex
	in     chan sdk.Incoming
	closed chan struct{}
	once   sync.Once
}

func newLoginTransport() *loginTransport {
	return &loginTransport{in: make(chan sdk.Incoming, 16), closed: make(chan struct{})}
}

func (f *loginTransport) Send(op imapi.Op, seq uint32, _ []byte) error {
	body := []byte("{}")
	if op == imapi.OpLogin {
		body, _ = json.Marshal(imapi.LoginResp{SessionID: "s", HeartbeatSec: 60})
	}
	select {
	case f.in <- sdk.Incoming{Op: op, Seq: seq, Code: imapi.OK, Body: body}:
	case <-f.closed:
		return errors.New("closed")
	}
	return nil
}

func (f *loginTransport) Recv() (sdk.Incoming, error) {
	select {
	case in := <-f.in:
		return in, nil
	case <-f.closed:
		return sdk.Incoming{}, errors.New("closed")
	}
}

func (f *loginTransport) Close() error { f.once.Do(func() { close(f.closed) }); return nil }

// The Go SDK reports what its connects measured (sdk.LBSReporter through
// lbsclient, signed for an app with a secret): clients of a prefix whose
// nearest entry point is slow to open make the LBS put the faster one first
// for the next client of that prefix.
func TestSDKReportsSteer(t *testing.T) {
	l := startSingleWith(t, Deps{}, func(c *Config) { c.RUM.Interval = config.Duration(20 * time.Millisecond) })
	// testdata/policy.yaml: from 101.0.0.0/24 (Singapore) edge-sg is the
	// nearest and edge-syd the next; here edge-sg takes 300 ms to open,
	// edge-syd 20 ms.
	delay := map[string]time.Duration{"192.0.2.11:7720": 300 * time.Millisecond, "[2001:db8::14]:7720": 20 * time.Millisecond}
	dial := func(ctx context.Context, addr string) (sdk.Transport, error) {
		d, ok := delay[addr]
		if !ok {
			return nil, errors.New("unreachable")
		}
		select {
		case <-time.After(d):
			return newLoginTransport(), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	hc := &http.Client{Transport: xffTransport{"101.0.0.77"}}
	newClient := func(account string) (*lbsclient.Client, *sdk.Client, *sdk.Reporter, chan error) {
		lc, err := lbsclient.New(lbsclient.Config{Servers: []string{"http://" + l.ClientAddr().String()}, AppKey: "signed",
			SigningSecret: "0123456789abcdef0123", SDK: "go-1.0.0"}, hc, nil)
		if err != nil {
			t.Fatal(err)
		}
		rep := sdk.LBSReporter(lc, sdk.ReportOptions{})
		done := make(chan error, 4)
		rep.Done = func(err error) { done <- err }
		c, err := sdk.New(sdk.Config{Resolver: sdk.LBSResolver(lc), Dialer: dial, AppKey: "signed", Account: account, Token: "t",
			RaceDelay: 50 * time.Millisecond, Reporter: rep.Report})
		if err != nil {
			t.Fatal(err)
		}
		return lc, c, rep, done
	}
	firstFor := func() string {
		lc, _, _, _ := newClient("probe")
		a, err := lc.Refresh(context.Background())
		if err != nil || len(a.Link) == 0 {
			t.Fatalf("query: %v %+v", err, a)
		}
		return a.Link[0].ID
	}
	if got := firstFor(); got != "edge-sg" {
		t.Fatalf("before any report the nearest comes first: got %s", got)
	}
	for i := range 3 {
		_, c, rep, done := newClient("user" + string(rune('a'+i)))
		c.Start()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("client %d: report: %v", i, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("client %d sent no report", i)
		}
		if rep.Sent.Load() != 1 {
			t.Fatalf("client %d: %d reports sent", i, rep.Sent.Load())
		}
		c.Close()
	}
	waittest.Until(t, 5*time.Second, "edge-syd first for 101.0.0.0/24", func() bool { return firstFor() == "edge-syd" })
}

// A reporter samples and rate-limits: at most one report per MinInterval,
// none with a negative Sample, and attempts at addresses the answer does
// not list are left out.
func TestReporterBounds(t *testing.T) {
	l := startSingleWith(t, Deps{})
	lc, err := lbsclient.New(lbsclient.Config{Servers: []string{"http://" + l.ClientAddr().String()}, AppKey: "demo"},
		&http.Client{Transport: xffTransport{"101.0.0.78"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lc.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 8)
	rep := sdk.LBSReporter(lc, sdk.ReportOptions{MinInterval: time.Hour})
	rep.Done = func(err error) { done <- err }
	r := sdk.ConnectReport{Attempts: []sdk.ConnectAttempt{
		{Addr: "192.0.2.11:7720", Time: 40 * time.Millisecond, Outcome: "won"},
		{Addr: "198.51.100.1:1", Time: time.Second, Outcome: "failed"}}}
	rep.Report(r)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for range 5 {
		rep.Report(r)
	}
	none := sdk.LBSReporter(lc, sdk.ReportOptions{Sample: -1})
	none.Report(r)
	unknown := sdk.LBSReporter(lc, sdk.ReportOptions{})
	unknown.Report(sdk.ConnectReport{Attempts: r.Attempts[1:]})
	if rep.Sent.Load() != 1 || rep.Failed.Load() != 0 || none.Sent.Load()+unknown.Sent.Load() != 0 {
		t.Fatalf("sent %d failed %d, sample 0 sent %d, unknown sent %d", rep.Sent.Load(), rep.Failed.Load(), none.Sent.Load(), unknown.Sent.Load())
	}
	select {
	case err := <-done:
		t.Fatalf("a report beyond the bounds went out: %v", err)
	default:
	}
}
