package jsworkers

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/longlink/longlink/core/bus/bustest"
	"github.com/longlink/longlink/pkg/waittest"
)

func consumer(t *testing.T) (jetstream.JetStream, jetstream.Consumer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	js := bustest.Embedded(t).JetStream()
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "W", Subjects: []string{"w.>"},
		Storage: jetstream.MemoryStorage, Retention: jetstream.WorkQueuePolicy}); err != nil {
		t.Fatal(err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, "W", jetstream.ConsumerConfig{Durable: "w",
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second, FilterSubject: "w.>"})
	if err != nil {
		t.Fatal(err)
	}
	return js, cons
}

// Every message reaches a worker; Stop waits for the ones in hand.
func TestPoolRunsAndStops(t *testing.T) {
	js, cons := consumer(t)
	var handled, inFlight, most atomic.Int64
	release := make(chan struct{})
	p, err := Start(cons, 3, 6, func(ctx context.Context, m jetstream.Msg) {
		n := inFlight.Add(1)
		for {
			old := most.Load()
			if n <= old || most.CompareAndSwap(old, n) {
				break
			}
		}
		<-release
		inFlight.Add(-1)
		_ = m.Ack()
		handled.Add(1)
	}, func(error) {})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if _, err := js.Publish(context.Background(), fmt.Sprintf("w.%d", i), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	waittest.Until(t, 10*time.Second, "three messages in hand", func() bool { return inFlight.Load() == 3 })
	close(release)
	waittest.Until(t, 10*time.Second, "every message handled", func() bool { return handled.Load() == 20 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if m := most.Load(); m != 3 {
		t.Fatalf("at most %d messages in hand at once, want 3 (the workers)", m)
	}
}

// When Stop's context ends first, the handlers' context is cancelled, Stop
// waits for them to return and reports the context's error.
func TestPoolStopCancelsHandlers(t *testing.T) {
	js, cons := consumer(t)
	var started, cancelled atomic.Int64
	p, err := Start(cons, 2, 2, func(ctx context.Context, m jetstream.Msg) {
		started.Add(1)
		<-ctx.Done()
		cancelled.Add(1)
	}, func(error) {})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if _, err := js.Publish(context.Background(), fmt.Sprintf("w.%d", i), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	waittest.Until(t, 10*time.Second, "both workers busy", func() bool { return started.Load() == 2 })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := p.Stop(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Stop: %v, want the context's deadline", err)
	}
	if n := cancelled.Load(); n != 2 {
		t.Fatalf("%d handlers returned before Stop did, want 2", n)
	}
}
