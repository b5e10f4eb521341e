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

// The probes (-core-probe): while the clients in the user node measure the
// path through the edge, one more client on the core's own loopback and
// one in the edge node (to edge-1 over TCP: the path behind the edge
// without the access leg) each send a message every 20–80 ms. A moment
// when the core (or this machine) stalls delays the core probe's messages
// too; one of the backbone or the edge delays the edge probe's only. So
// the late messages through the edge split into those the core shared,
// those the path behind the edge shared, and the rest (the access leg,
// or moments between the probes' messages).

// runProbe sends messages as alice on device (a type that kicks none of the
// measuring clients' devices) to bob on target until ctx ends (the
// orchestrator's SIGINT), then prints them as a measurement.
func runProbe(ctx context.Context, clientFile, target, device string) error {
	cf, err := sdk.LoadClientFile(clientFile)
	if err != nil {
		return err
	}
	cfg, err := cf.Config(demoAccounts[0])
	if err != nil {
		return err
	}
	cfg.Addresses, cfg.DeviceType, cfg.ConnectTimeout = []string{target}, device, 20*time.Second
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

// startProbe starts a probe in node against target; stop ends it and
// returns its messages. Each probe of a run has its own device type.
func startProbe(ctx context.Context, w *wan.World, exe, node, clientFile, target, device string) (stop func() (measurement, error), err error) {
	cmd, err := w.Command(ctx, node, exe, "-role", "probeclient", "-clientfile", clientFile, "-target", target, "-probe-device", device)
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
			return m, fmt.Errorf("probe in %s: %w", node, err)
		}
		return m, json.Unmarshal([]byte(out.String()), &m)
	}, nil
}

// probeCover tells for each of m's messages whether a probe message was in
// flight during it: coverLate when one of them was late (over the probe's
// p50 + 30 ms), coverOnTime when all were on time, coverNone when there
// was none (the probe was not running yet).
func probeCover(m, probe measurement) []cover {
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
	out := make([]cover, len(m.MessageMS))
	for i, d := range m.MessageMS {
		if i >= len(m.MessageAt) {
			break
		}
		s := span{float64(m.MessageAt[i]), float64(m.MessageAt[i]) + d}
		switch {
		case overlaps(slow, s):
			out[i] = coverLate
		case overlaps(all, s):
			out[i] = coverOnTime
		}
	}
	return out
}

type cover int8

const (
	coverNone cover = iota
	coverOnTime
	coverLate
)

// probeShare counts a variant's messages covered by both probes, late (over
// its p50 + 50 ms) and on time, and of them those in flight while a core
// probe message was late (the core's or the machine's moment) and, of the
// others, those in flight while an edge probe message was late (the
// backbone's or the edge's moment).
type probeShare struct{ late, lateCore, lateEdge, onTime, onTimeCore, onTimeEdge int }

func shareWithProbes(m, core, edge measurement) probeShare {
	var ps probeShare
	c, e := probeCover(m, core), probeCover(m, edge)
	p50 := pct(m.MessageMS, 50)
	for i, d := range m.MessageMS {
		if c[i] == coverNone || e[i] == coverNone {
			continue
		}
		n, nc, ne := &ps.onTime, &ps.onTimeCore, &ps.onTimeEdge
		if d > p50+50 {
			n, nc, ne = &ps.late, &ps.lateCore, &ps.lateEdge
		}
		*n++
		switch {
		case c[i] == coverLate:
			*nc++
		case e[i] == coverLate:
			*ne++
		}
	}
	return ps
}

// reportProbe prints the probes' own figures and, per variant, how many of
// its late messages the core or the path behind the edge shared.
func reportProbe(core, edge measurement, ms map[string]measurement, names ...string) {
	for _, p := range []struct {
		name string
		m    measurement
	}{{"core probe (core loopback)", core}, {"edge probe (edge node to edge-1, no access leg)", edge}} {
		fmt.Printf("# %s: %d messages (%d failed), p50 %.1f p90 %.1f p99 %.1f max %.1f ms\n", p.name,
			len(p.m.MessageMS), p.m.MessageFailed, pct(p.m.MessageMS, 50), pct(p.m.MessageMS, 90), pct(p.m.MessageMS, 99), pct(p.m.MessageMS, 100))
		reportSplit(p.name, p.m)
	}
	ps := shareWithProbes(edge, core, core)
	fmt.Printf("# edge probe while a core probe message was late (over its p50 + 30 ms): %d of %d late messages, %d of %d on time\n",
		ps.lateCore, ps.late, ps.onTimeCore, ps.onTime)
	for _, n := range names {
		ps := shareWithProbes(ms[n], core, edge)
		fmt.Printf("# msg %s in flight while a probe message was late: of %d late messages %d with the core probe, %d more with the edge probe, %d with neither; of %d on time %d and %d\n",
			n, ps.late, ps.lateCore, ps.lateEdge, ps.late-ps.lateCore-ps.lateEdge, ps.onTime, ps.onTimeCore, ps.onTimeEdge)
	}
}
