package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/sdk"
	"github.com/longlink/longlink/tools/wanemu/wan"
)

// The core probe (-core-probe): while the clients in the user node measure
// the path through the edge, one more client on the core's own loopback
// sends a message every 20–80 ms. A moment when the core (or this
// machine) stalls delays the probe's messages too; a moment when only the
// path to the core does leaves them on time. So the late messages through
// the edge split into those the core shared and those of the path.

// runProbe sends messages as alice on device "probe" (which kicks none of
// the measuring clients' devices) to bob on target until ctx ends (the
// orchestrator's SIGINT), then prints them as a measurement.
func runProbe(ctx context.Context, clientFile, target string) error {
	cf, err := sdk.LoadClientFile(clientFile)
	if err != nil {
		return err
	}
	cfg, err := cf.Config(demoAccounts[0])
	if err != nil {
		return err
	}
	cfg.Addresses, cfg.DeviceType, cfg.ConnectTimeout = []string{target}, "probe", 20*time.Second
	c, err := sdk.New(cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	c.Start()
	go func() {
		for range c.Events() {
		}
	}()
	if err := c.WaitConnected(ctx); err != nil {
		return err
	}
	var m measurement
	rng := rand.New(rand.NewPCG(7, 7))
	text := strings.Repeat("x", 200)
	for ctx.Err() == nil {
		start := time.Now()
		ack, err := c.SendText(ctx, imapi.ConvP2P, demoAccounts[1], text)
		switch {
		case ctx.Err() != nil:
		case err != nil:
			m.MessageFailed++
		default:
			m.MessageMS = append(m.MessageMS, ms(time.Since(start)))
			m.MessageAt = append(m.MessageAt, start.UnixMilli())
			m.MessageUpMS = append(m.MessageUpMS, float64(ack.Time-start.UnixMilli()))
			m.MessageNth = append(m.MessageNth, len(m.MessageNth))
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(20+rng.IntN(60)) * time.Millisecond):
		}
	}
	return json.NewEncoder(os.Stdout).Encode(m)
}

// startProbe starts the core probe in node against target; stop ends it and
// returns its messages.
func startProbe(ctx context.Context, w *wan.World, exe, node, clientFile, target string) (stop func() (measurement, error), err error) {
	cmd, err := w.Command(ctx, node, exe, "-role", "probeclient", "-clientfile", clientFile, "-target", target)
	if err != nil {
		return nil, err
	}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	if err := w.Spawn(cmd); err != nil {
		return nil, err
	}
	return func() (measurement, error) {
		var m measurement
		// ip netns exec execs the client itself: the signal reaches it.
		_ = cmd.Process.Signal(syscall.SIGINT)
		if err := cmd.Wait(); err != nil {
			return m, fmt.Errorf("core probe: %w", err)
		}
		return m, json.Unmarshal([]byte(out.String()), &m)
	}, nil
}

// probeShare tells how many of a variant's messages were in flight while a
// probe message was late (over the probe's p50 + 30 ms): of its late
// messages (over its p50 + 50 ms) and, for comparison, of its other ones.
// Messages that overlap no probe message at all (the probe was not running
// yet) count in neither.
type probeShare struct{ late, lateShared, onTime, onTimeShared int }

func shareWithProbe(m, probe measurement) probeShare {
	type span struct{ from, to float64 }
	var all, slow []span
	cut := pct(probe.MessageMS, 50) + 30
	for i, d := range probe.MessageMS {
		s := span{float64(probe.MessageAt[i]), float64(probe.MessageAt[i]) + d}
		all = append(all, s)
		if d > cut {
			slow = append(slow, s)
		}
	}
	overlaps := func(spans []span, s span) bool {
		return slices.ContainsFunc(spans, func(p span) bool { return p.from < s.to && s.from < p.to })
	}
	var ps probeShare
	p50 := pct(m.MessageMS, 50)
	for i, d := range m.MessageMS {
		if i >= len(m.MessageAt) {
			break
		}
		s := span{float64(m.MessageAt[i]), float64(m.MessageAt[i]) + d}
		if !overlaps(all, s) {
			continue
		}
		shared := overlaps(slow, s)
		if d > p50+50 {
			ps.late++
			if shared {
				ps.lateShared++
			}
		} else {
			ps.onTime++
			if shared {
				ps.onTimeShared++
			}
		}
	}
	return ps
}

// reportProbe prints the probe's own figures and, per variant, how many of
// its late messages the core shared.
func reportProbe(probe measurement, ms map[string]measurement, names ...string) {
	fmt.Printf("# core probe (loopback client, same time): %d messages (%d failed), p50 %.1f p90 %.1f p99 %.1f max %.1f ms\n",
		len(probe.MessageMS), probe.MessageFailed, pct(probe.MessageMS, 50), pct(probe.MessageMS, 90), pct(probe.MessageMS, 99), pct(probe.MessageMS, 100))
	reportSplit("core probe", probe)
	for _, n := range names {
		ps := shareWithProbe(ms[n], probe)
		fmt.Printf("# msg %s while a probe message was late (over its p50 + 30 ms): %d of %d late messages, %d of %d on time\n",
			n, ps.lateShared, ps.late, ps.onTimeShared, ps.onTime)
	}
}
