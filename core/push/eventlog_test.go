package push

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/longlink/longlink/core/bus/bustest"
	"github.com/longlink/longlink/core/internal/buswire"
	"github.com/longlink/longlink/pkg/logging"
	"github.com/longlink/longlink/pkg/waittest"
)

// An entry the event stream does not take (here: the stream does not exist
// yet) is retried until it does, once; entries recorded while the queue is
// full are shed and counted, and so are those left when the writer stops
// before the stream takes them. Nothing else goes missing.
func TestEventWriterRetriesAndSheds(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := bustest.Embedded(t)
	cfg := DefaultPresence()
	cfg.MemoryStorage = true
	cfg.EventQueue = 2
	m := newPresenceMetrics()
	w := newEventWriter(b.JetStream(), &cfg, logging.OrDiscard(nil), m)
	s := buswire.Session{AppKey: "app1", Account: "alice", SessionID: "s1"}
	result := func(r string) float64 { return testutil.ToFloat64(m.events.WithLabelValues(r)) }

	// No stream: the first entry is retried.
	w.record(EventLogin, "", time.Now(), s)
	waittest.Until(t, 10*time.Second, "a failed publish", func() bool { return testutil.ToFloat64(m.eventRetries) >= 1 })
	// The first is out of the queue, being retried: two fit, two are shed.
	for range 4 {
		w.record(EventLogout, "bye", time.Now(), s)
	}
	if got := result("shed_queue_full"); got != 2 {
		t.Fatalf("shed_queue_full %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.eventsQueued); got != 2 {
		t.Fatalf("queued %v, want 2", got)
	}

	// The stream comes: the three are published, the first once.
	if err := ensureEventStream(ctx, b.JetStream(), &cfg, 1); err != nil {
		t.Fatal(err)
	}
	waittest.Until(t, 20*time.Second, "three entries published", func() bool { return result("published") == 3 })
	st, err := b.JetStream().Stream(ctx, cfg.EventStream)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := st.Info(ctx); err != nil || info.State.Msgs != 3 {
		t.Fatalf("stream holds %+v (%v), want 3 messages", info, err)
	}

	// Stopping with the stream gone and a deadline already passed: what is
	// left is shed and counted, and later entries too.
	if err := b.JetStream().DeleteStream(ctx, cfg.EventStream); err != nil {
		t.Fatal(err)
	}
	w.record(EventLogin, "", time.Now(), s)
	waittest.Until(t, 10*time.Second, "a failed publish", func() bool { return testutil.ToFloat64(m.eventRetries) >= 2 })
	w.record(EventLogin, "", time.Now(), s)
	done, stop := context.WithCancel(ctx)
	stop()
	w.shutdown(done)
	w.record(EventLogin, "", time.Now(), s)
	if got := result("shed_shutdown"); got != 3 {
		t.Fatalf("shed_shutdown %v, want 3 (in flight, queued, after the stop)", got)
	}
	if got := testutil.ToFloat64(m.eventsQueued); got != 0 {
		t.Fatalf("queued %v after the stop", got)
	}
}
