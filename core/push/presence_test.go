package push

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/longlink/longlink/core/bus/bustest"
	"github.com/longlink/longlink/core/internal/buswire"
	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/pkg/waittest"
)

// Sessions appear and disappear with their gateway's reports; a gateway
// that stops renewing its lease (a crash: its connection is gone, nothing
// is deleted) takes its sessions offline within one lease; restarted under
// the same id it deletes what the crash left behind.
func TestPresenceLeases(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := bustest.Embedded(t)
	cfg := DefaultPresence()
	cfg.MemoryStorage = true
	cfg.Lease = config.Duration(time.Second)
	reg, err := NewRegistry(cfg, RegistryDeps{JetStream: b.JetStream()})
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = reg.Shutdown(ctx) }()

	gw1, err := NewReporter(cfg, ReporterDeps{JetStream: b.JetStream(), Gateway: "gw.one"})
	if err != nil {
		t.Fatal(err)
	}
	if err := gw1.Start(ctx); err != nil {
		t.Fatal(err)
	}
	alice := buswire.Session{AppKey: "app1", Account: "alice@x", SessionID: "s1", DeviceType: "phone"}
	gw1.SessionOpened(alice)
	waittest.Until(t, 10*time.Second, "alice online", func() bool { return reg.Online("app1", "alice@x") })
	if reg.Online("app1", "bob") || reg.Online("app2", "alice@x") {
		t.Fatal("others online")
	}
	gw1.SessionClosed(alice, "logout", false)
	waittest.Until(t, 10*time.Second, "alice offline", func() bool { return !reg.Online("app1", "alice@x") })

	// A crash: the reporter's connection goes away without a word.
	nc, err := b.Connect("crashing-gateway")
	if err != nil {
		t.Fatal(err)
	}
	js2, err := jetstreamFor(nc)
	if err != nil {
		t.Fatal(err)
	}
	gw2, err := NewReporter(cfg, ReporterDeps{JetStream: js2, Gateway: "gw2"})
	if err != nil {
		t.Fatal(err)
	}
	if err := gw2.Start(ctx); err != nil {
		t.Fatal(err)
	}
	bob := buswire.Session{AppKey: "app1", Account: "bob", SessionID: "s2"}
	gw2.SessionOpened(bob)
	waittest.Until(t, 10*time.Second, "bob online", func() bool { return reg.Online("app1", "bob") })
	nc.Close()
	crashed := time.Now()
	waittest.Until(t, 10*time.Second, "bob offline after the lease", func() bool { return !reg.Online("app1", "bob") })
	if d := time.Since(crashed); d > 3*time.Second {
		t.Fatalf("bob stayed online %v after the crash (lease 1s)", d)
	}
	close(gw2.quit) // the crashed reporter's loop
	gw2.wg.Wait()

	// An app node starting now sees the crashed gateway's sessions as
	// offline and a live gateway's as online, from the snapshot alone.
	dan := buswire.Session{AppKey: "app1", Account: "dan", SessionID: "s4"}
	gw1.SessionOpened(dan)
	waittest.Until(t, 10*time.Second, "dan online", func() bool { return reg.Online("app1", "dan") })
	time.Sleep(time.Second)
	reg2, err := NewRegistry(cfg, RegistryDeps{JetStream: b.JetStream()})
	if err != nil {
		t.Fatal(err)
	}
	if err := reg2.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if !reg2.Online("app1", "dan") || reg2.Online("app1", "bob") {
		t.Fatalf("a fresh registry: dan online %v, bob online %v", reg2.Online("app1", "dan"), reg2.Online("app1", "bob"))
	}
	_ = reg2.Shutdown(ctx)

	// Restarted under the same id: bob's stale key is gone for good, not
	// revived by the fresh lease.
	gw2b, err := NewReporter(cfg, ReporterDeps{JetStream: b.JetStream(), Gateway: "gw2"})
	if err != nil {
		t.Fatal(err)
	}
	if err := gw2b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if reg.Online("app1", "bob") {
		t.Fatal("a restarted gateway revived its crashed sessions")
	}
	carol := buswire.Session{AppKey: "app1", Account: "carol", SessionID: "s3"}
	gw2b.SessionOpened(carol)
	waittest.Until(t, 10*time.Second, "carol online", func() bool { return reg.Online("app1", "carol") })
	// A clean stop removes the gateway's sessions.
	if err := gw2b.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	waittest.Until(t, 10*time.Second, "carol offline after a clean stop", func() bool { return !reg.Online("app1", "carol") })
	if err := gw1.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

// Writes lost to a full queue (or a bus outage) are repaired at the next
// lease renewal: the bucket ends up holding exactly the live sessions,
// whether the reporter keeps its own copy of them or asks the gateway's
// list (SetLive, as core wires it).
func TestPresenceReconcile(t *testing.T) {
	for _, lister := range []bool{false, true} {
		t.Run(fmt.Sprintf("lister=%v", lister), func(t *testing.T) { testPresenceReconcile(t, lister) })
	}
}

func testPresenceReconcile(t *testing.T, lister bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := bustest.Embedded(t)
	cfg := DefaultPresence()
	cfg.MemoryStorage = true
	cfg.Lease = config.Duration(time.Second)
	cfg.Queue = 1
	reg, err := NewRegistry(cfg, RegistryDeps{JetStream: b.JetStream()})
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = reg.Shutdown(ctx) }()
	m := nopPresenceMetrics()
	gw, err := NewReporter(cfg, ReporterDeps{JetStream: b.JetStream(), Gateway: "gw-small-queue", Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	open := map[string]buswire.Session{} // the "gateway's" own sessions
	if lister {
		gw.SetLive(func() []buswire.Session {
			mu.Lock()
			defer mu.Unlock()
			var out []buswire.Session
			for _, s := range open {
				out = append(out, s)
			}
			return out
		})
	}
	if err := gw.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = gw.Shutdown(ctx) }()
	var ss []buswire.Session
	for i := range 50 {
		s := buswire.Session{AppKey: "app1", Account: fmt.Sprintf("u%d", i), SessionID: fmt.Sprintf("s%d", i)}
		ss = append(ss, s)
		mu.Lock()
		open[s.SessionID] = s
		mu.Unlock()
		gw.SessionOpened(s)
	}
	waittest.Until(t, 10*time.Second, "all 50 online after the repair", func() bool { return reg.Sessions() == 50 })
	for _, s := range ss[:40] {
		mu.Lock()
		delete(open, s.SessionID)
		mu.Unlock()
		gw.SessionClosed(s, "disconnected", false)
	}
	waittest.Until(t, 10*time.Second, "10 left after the repair", func() bool { return reg.Sessions() == 10 })
	if reg.Online("app1", "u0") || !reg.Online("app1", "u45") {
		t.Fatal("wrong sessions left")
	}
	if testutil.ToFloat64(m.reconciles) == 0 {
		t.Fatal("no reconcile counted")
	}
}

// watchFailJS is a JetStream whose presence bucket fails its first watches
// with err (nats.go's answer when the consumer is not created within its
// default wait).
type watchFailJS struct {
	jetstream.JetStream
	err   error
	fails int // the watches that fail; -1: every one
	calls atomic.Int32
}

func (j *watchFailJS) CreateOrUpdateKeyValue(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	kv, err := j.JetStream.CreateOrUpdateKeyValue(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return watchFailKV{kv, j}, nil
}

type watchFailKV struct {
	jetstream.KeyValue
	j *watchFailJS
}

func (kv watchFailKV) WatchAll(ctx context.Context, opts ...jetstream.WatchOpt) (jetstream.KeyWatcher, error) {
	if n := int(kv.j.calls.Add(1)); kv.j.fails < 0 || n <= kv.j.fails {
		return nil, kv.j.err
	}
	return kv.KeyValue.WatchAll(ctx, opts...)
}

// A registry whose watch is not created in time (JetStream under load)
// asks again while its start lasts, then sees what gateways report; one
// that never gets it fails when the start's time is over; an error that
// asking again cannot cure fails the start at once.
func TestRegistryStartRetriesWatch(t *testing.T) {
	b := bustest.Embedded(t)
	cfg := DefaultPresence()
	cfg.MemoryStorage = true
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	js := &watchFailJS{JetStream: b.JetStream(), err: context.DeadlineExceeded, fails: 2}
	reg, err := NewRegistry(cfg, RegistryDeps{JetStream: js})
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Start(ctx); err != nil {
		t.Fatalf("start after %d watches: %v", js.calls.Load(), err)
	}
	defer func() { _ = reg.Shutdown(ctx) }()
	if n := js.calls.Load(); n != 3 {
		t.Fatalf("%d watches, want 3", n)
	}
	gw, err := NewReporter(cfg, ReporterDeps{JetStream: b.JetStream(), Gateway: "gw.one"})
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = gw.Shutdown(ctx) }()
	gw.SessionOpened(buswire.Session{AppKey: "app1", Account: "alice", SessionID: "s1"})
	waittest.Until(t, 10*time.Second, "alice online", func() bool { return reg.Online("app1", "alice") })

	never := &watchFailJS{JetStream: b.JetStream(), err: nats.ErrTimeout, fails: -1}
	reg2, err := NewRegistry(cfg, RegistryDeps{JetStream: never})
	if err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithTimeout(ctx, time.Second)
	defer scancel()
	if err := reg2.Start(sctx); !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, nats.ErrTimeout) || never.calls.Load() < 2 {
		t.Fatalf("start with no watch: %v after %d watches; want the start's deadline and the last error, after more than one", err, never.calls.Load())
	}

	denied := errors.New("permissions violation")
	bad := &watchFailJS{JetStream: b.JetStream(), err: denied, fails: -1}
	reg3, err := NewRegistry(cfg, RegistryDeps{JetStream: bad})
	if err != nil {
		t.Fatal(err)
	}
	if err := reg3.Start(ctx); !errors.Is(err, denied) || bad.calls.Load() != 1 {
		t.Fatalf("start with a denied watch: %v after %d watches; want it at once", err, bad.calls.Load())
	}
}
