package sdk

import (
	"context"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/longlink/longlink/core/link"
	"github.com/longlink/longlink/pkg/waittest"
)

// TestRaceDialSYNLoss: the first connection attempt hangs (its SYN was
// lost); a second starts after the stagger and wins, and the first is
// cancelled.
func TestRaceDialSYNLoss(t *testing.T) {
	var calls atomic.Int32
	firstCancelled := make(chan struct{})
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		if calls.Add(1) == 1 {
			<-ctx.Done()
			close(firstCancelled)
			return nil, ctx.Err()
		}
		a, b := net.Pipe()
		t.Cleanup(func() { a.Close(); b.Close() })
		return a, nil
	}
	start := time.Now()
	c, err := raceDial(context.Background(), "race-test:1", LinkOptions{DialRace: 50 * time.Millisecond}, dial, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if d := time.Since(start); d < 50*time.Millisecond || d > 2*time.Second {
		t.Fatalf("connected after %v, want just after the 50ms stagger", d)
	}
	select {
	case <-firstCancelled:
	case <-time.After(2 * time.Second):
		t.Fatal("the losing attempt was not cancelled")
	}
	if calls.Load() != 2 {
		t.Fatalf("%d attempts, want 2", calls.Load())
	}
}

// TestRaceDialFast: a connection that succeeds before the stagger gets no
// second attempt; the stagger follows the round trip remembered for the
// address; a refused dial fails at once; racing can be disabled.
func TestRaceDialFast(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	var calls atomic.Int32
	counting := func(ctx context.Context, addr string) (net.Conn, error) {
		calls.Add(1)
		return tcpDial(ctx, addr)
	}
	c, err := raceDial(context.Background(), ln.Addr().String(), LinkOptions{DialRace: time.Second}, counting, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	time.Sleep(50 * time.Millisecond)
	if calls.Load() != 1 {
		t.Fatalf("%d attempts for a fast connection, want 1", calls.Load())
	}

	// A remembered 20 ms round trip makes the stagger 80 ms, not 1 s.
	rtts.Store("remembered:1", 20*time.Millisecond)
	calls.Store(0)
	hang := func(ctx context.Context, addr string) (net.Conn, error) {
		if calls.Add(1) == 1 {
			<-ctx.Done()
			return nil, ctx.Err()
		}
		a, b := net.Pipe()
		t.Cleanup(func() { a.Close(); b.Close() })
		return a, nil
	}
	start := time.Now()
	c, err = raceDial(context.Background(), "remembered:1", LinkOptions{DialRace: time.Second}, hang, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Fatalf("stagger %v, want about 80ms from the remembered round trip", d)
	}

	// Refused: fail at once, without waiting for the stagger.
	addr := ln.Addr().String()
	ln.Close()
	start = time.Now()
	if _, err := raceDial(context.Background(), addr, LinkOptions{DialRace: 5 * time.Second}, tcpDial, nil); err == nil {
		t.Fatal("dial to a closed port succeeded")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("refused dial took %v", d)
	}

	// Disabled: one attempt only.
	calls.Store(0)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := raceDial(ctx, "disabled:1", LinkOptions{DialRace: -1}, hang, nil); err == nil {
		t.Fatal("hanging dial succeeded")
	}
	if calls.Load() != 1 {
		t.Fatalf("%d attempts with racing disabled, want 1", calls.Load())
	}
}

// TestNudger: a request still unacknowledged two round trips after it was
// written gets one heartbeat nudge; an acknowledged one gets none.
func TestNudger(t *testing.T) {
	var unacked atomic.Int32
	var sent atomic.Int32
	n := &nudger{
		info: func() (time.Duration, int, bool) { return 5 * time.Millisecond, int(unacked.Load()), true },
		send: func() error { sent.Add(1); return nil },
	}
	defer n.stop()
	unacked.Store(1)
	n.arm()
	n.arm() // one check at a time
	waittest.Until(t, 3*time.Second, "one nudge", func() bool { return sent.Load() == 1 })
	time.Sleep(60 * time.Millisecond)
	if sent.Load() != 1 {
		t.Fatalf("%d nudges for one request, want 1", sent.Load())
	}
	unacked.Store(0)
	n.arm()
	time.Sleep(80 * time.Millisecond)
	if sent.Load() != 1 {
		t.Fatalf("nudged an acknowledged request")
	}
}

// TestRaceDialBusy: while the first attempt is connected and the server
// has acknowledged its bytes (busy: a slow server, not a lost packet), no
// second attempt starts; the first one's answer is taken when it comes.
// With the real Link dialer against a server that accepts but does not
// answer the handshake, one connection is made, not two.
func TestRaceDialBusy(t *testing.T) {
	var calls atomic.Int32
	release := make(chan struct{})
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		calls.Add(1)
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		a, b := net.Pipe()
		t.Cleanup(func() { a.Close(); b.Close() })
		return a, nil
	}
	var checks atomic.Int32
	busy := func() bool {
		if checks.Add(1) == 4 {
			close(release) // the slow server answers after a few staggers
		}
		return true
	}
	c, err := raceDial(context.Background(), "busy:1", LinkOptions{DialRace: 20 * time.Millisecond}, dial, busy)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if calls.Load() != 1 {
		t.Fatalf("%d attempts, want 1", calls.Load())
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted atomic.Int32
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			t.Cleanup(func() { nc.Close() })
		}
	}()
	kp, err := link.GenerateKey("k")
	if err != nil {
		t.Fatal(err)
	}
	d := LinkDialerWith(map[string][]byte{"k": kp.Public}, link.Limits{}, LinkOptions{DialRace: 20 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if _, err := d(ctx, ln.Addr().String()); err == nil {
		t.Fatal("a server that never answers: want an error")
	}
	if n := accepted.Load(); n != 1 && runtime.GOOS == "linux" {
		t.Fatalf("%d connections to a slow server, want 1", n)
	}
}

// TestRaceDialStarved: when the stagger's timer fires a stagger or more
// late (the process did not run: starved of CPU), no second attempt
// starts; the first one's result is taken when it comes.
func TestRaceDialStarved(t *testing.T) {
	var calls atomic.Int32
	release := make(chan struct{})
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		calls.Add(1)
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		a, b := net.Pipe()
		t.Cleanup(func() { a.Close(); b.Close() })
		return a, nil
	}
	// Every reading is an hour after the previous one: each firing of
	// the timer is late. The first attempt ends after a few of them.
	var readings atomic.Int32
	base := time.Now()
	clock := func() time.Time {
		n := readings.Add(1)
		if n == 4 {
			close(release)
		}
		return base.Add(time.Duration(n) * time.Hour)
	}
	c, err := raceDial(context.Background(), "starved:1", LinkOptions{DialRace: 20 * time.Millisecond, now: clock}, dial, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if calls.Load() != 1 {
		t.Fatalf("%d attempts while the timer fired late, want 1", calls.Load())
	}
}
