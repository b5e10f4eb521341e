package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/sdk"
	"github.com/longlink/longlink/pkg/pki"
	"github.com/longlink/longlink/tools/wanemu/wan"
)

// This file runs the real Longlink in the standard world: `longlink dev` (the
// core with its demo app and users) and `longlink relay -egress` in the core
// namespace, `longlink edge` in the edge namespace, and core/sdk clients in
// the user namespace, once straight to the core's gateway and once through
// the edge. Figures are named accel_*.

// demoAccounts are the users `longlink dev` seeds.
var demoAccounts = []string{"alice", "bob", "carol"}

// orchestrateLonglink builds cmd/longlink, starts it in the world and
// measures both paths.
func orchestrateLonglink(ctx context.Context, log *slog.Logger, f flags, w *wan.World, dir, exe string) error {
	run, err := newLonglinkRun(ctx, w, dir, map[string]string{"edge": w.Addr("edge").String(), "core": w.Addr("core").String()})
	if err != nil {
		return err
	}
	defer run.finish()
	core, edge := w.Addr("core").String(), w.Addr("edge").String()
	port := map[string]string{"quic": "7745", "kcp": "7746"}[f.tunnel]
	files := map[string]string{
		// The gateway also listens on the core's world address, for the
		// direct path; the egress reaches it on loopback.
		"dev.yaml": `
core:
  gateway:
    listen: 0.0.0.0:7710
    trusted_proxies: [127.0.0.1/32]
`,
		"egress.yaml": fmt.Sprintf(`
name: core-egress
cluster: default
listen: {quic: "%[1]s:7745", kcp: "%[1]s:7746"}
%[2]s
services:
  link: {kind: link, address: "127.0.0.1:7710"}
  link-frames: {kind: link-frames, address: "127.0.0.1:7713"}
`, core, run.security("core")),
	}
	edgeYAML := `
name: edge-1
cluster: default
link: {listen: "%[1]s:7720", quic: "%[1]s:7724", service: link%[6]s}
weblink: {listen: ""}
%[2]s
routing:
  routes:
    - cluster: default
      direct: {name: core, transport: %[3]s, address: "%[4]s:%[5]s"}
%[7]s`
	for name, text := range files {
		if _, err := run.config(name, text); err != nil {
			return err
		}
	}
	devDir := filepath.Join(dir, "dev")
	start := func(node string, args ...string) error {
		_, err := run.start(ctx, node, nil, args...)
		return err
	}
	if err := start("core", "dev", "-dir", devDir, "-config", filepath.Join(dir, "dev.yaml")); err != nil {
		return err
	}
	clientFile := filepath.Join(devDir, "client.json")
	if err := waitFor(ctx, 60*time.Second, func() bool { _, err := os.Stat(clientFile); return err == nil }); err != nil {
		return fmt.Errorf("longlink dev did not write %s: %w", clientFile, err)
	}
	// The edge terminates Link with the dev core's key (as `longlink dev`'s
	// own edge does), unless -passthrough.
	terminate := ""
	if !f.passthrough {
		var st struct {
			ID      string `json:"link_key_id"`
			Private string `json:"link_private_key"`
			// The dev core signs the demo tokens; with the public key the
			// edge answers logins itself (LINK.md section 7).
			TokenKeyID     string `json:"token_key_id"`
			TokenPublicKey string `json:"token_public_key"`
		}
		b, err := os.ReadFile(filepath.Join(devDir, "dev.json"))
		if err == nil {
			err = json.Unmarshal(b, &st)
		}
		if err != nil {
			return fmt.Errorf("dev state: %w", err)
		}
		if err := os.WriteFile(filepath.Join(dir, "link.key"), []byte(st.Private), 0o600); err != nil {
			return err
		}
		if st.TokenPublicKey == "" {
			return errors.New("dev state has no token_public_key: longlink dev no longer signs its tokens?")
		}
		terminate = fmt.Sprintf(", terminate: {keys: [{id: %q, private_key: \"file:%s\"}], token_keys: [{id: %q, public_key: %q}]}",
			st.ID, filepath.Join(dir, "link.key"), st.TokenKeyID, st.TokenPublicKey)
	}
	redundancy := ""
	if f.redundancy > 0 {
		redundancy = fmt.Sprintf("  redundancy: {link_frames: %d}\n", f.redundancy)
	}
	if f.lanes > 0 {
		redundancy += fmt.Sprintf("  lanes: %d\n", f.lanes)
	}
	edgeYAML = fmt.Sprintf(edgeYAML, edge, run.security("edge"), f.tunnel, core, port, terminate, redundancy)
	if _, err := run.config("edge.yaml", edgeYAML); err != nil {
		return err
	}
	if err := start("core", "relay", "-egress", "-config", filepath.Join(dir, "egress.yaml"), "-debug-addr", ""); err != nil {
		return err
	}
	if err := start("edge", "edge", "-config", filepath.Join(dir, "edge.yaml"), "-debug-addr", ""); err != nil {
		return err
	}
	if err := waitFor(ctx, 30*time.Second, func() bool {
		return w.Do("edge", func() error {
			c, err := net.DialTimeout("tcp", edge+":7720", time.Second)
			if err == nil {
				c.Close()
			}
			return err
		}) == nil
	}); err != nil {
		return fmt.Errorf("edge Link listener: %w", err)
	}
	mode := "terminating Link"
	if f.passthrough {
		mode = "Link passthrough"
	}
	fmt.Printf("# world %s: Longlink direct user->core gateway vs user->edge (%s)->%s tunnel->core egress; clients: dial race %v (0: default), nudge %v; edge link-frames redundancy %d, lanes %d (0: default)\n",
		f.world, mode, f.tunnel, f.link.DialRace, !f.link.DisableNudge, f.redundancy, f.lanes)

	clientArgs := []string{"-role", "sdkclient", "-clientfile", clientFile,
		"-connects", fmt.Sprint(f.plan.connects), "-msg-for", f.plan.msgFor.String(),
		"-dial-race", f.link.DialRace.String(), fmt.Sprintf("-no-nudge=%v", f.link.DisableNudge)}
	measure := func(node, target string) (measurement, error) {
		var m measurement
		cmd, err := w.Command(ctx, node, exe, append(clientArgs, "-target", target)...)
		if err != nil {
			return m, err
		}
		out, err := runOutput(w, cmd)
		if err != nil {
			return m, fmt.Errorf("sdk client for %s: %w", target, err)
		}
		if err := json.Unmarshal(out, &m); err != nil {
			return m, fmt.Errorf("sdk client for %s: %w", target, err)
		}
		return m, nil
	}
	direct, err := measure("user", core+":7710")
	if err != nil {
		return err
	}
	accel, err := measure("user", edge+":7720")
	if err != nil {
		return err
	}
	report("accel", f.tunnel, direct, accel)
	if f.measured != nil {
		f.measured(direct, accel)
	}
	// The same edge and clients over Link over QUIC on the access leg
	// (core/link/linkquic): TCP's 200 ms minimum retransmission timeout
	// against QUIC's loss recovery within about a round trip.
	overQUIC, err := measure("user", "quic://"+edge+":7724")
	if err != nil {
		return err
	}
	reportAccess(f.tunnel, accel, overQUIC, worldFloor(f.world))
	if f.measuredQUIC != nil {
		f.measuredQUIC(overQUIC)
	}
	if f.local {
		// The core's own share: the same client on the core's loopback, no
		// WAN at all (it competes with the core for this machine's CPU).
		local, err := measure("core", "127.0.0.1:7710")
		if err != nil {
			return err
		}
		fmt.Printf("# core-local samples: connect %d (failed %d), messages %d (failed %d)\n",
			len(local.ConnectMS), local.ConnectFailed, len(local.MessageMS), local.MessageFailed)
		for _, r := range []struct {
			name string
			v    float64
		}{
			{"connect_login_core_local_p50", pct(local.ConnectMS, 50)},
			{"connect_login_core_local_p99", pct(local.ConnectMS, 99)},
			{"msg_rtt_core_local_p50", pct(local.MessageMS, 50)},
			{"msg_rtt_core_local_p99", pct(local.MessageMS, 99)},
		} {
			if !math.IsNaN(r.v) {
				fmt.Printf("RESULT accel_%s %.2f ms\n", r.name, r.v)
			}
		}
	}
	printLinkStats(w)
	return nil
}

// reportAccess prints the access leg's figures, TCP against QUIC through the
// same edge in the same run (accel_access_*), and the message p99 over the
// propagation floor of the path through the edge (the goal is 1.15).
func reportAccess(tunnel string, tcp, quic measurement, floor time.Duration) {
	res := func(name string, v float64, unit string) {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			fmt.Printf("RESULT accel_access_%s %.2f %s\n", name, v, unit)
		}
	}
	fmt.Printf("# access leg over TCP vs QUIC (edge, %s tunnel); samples: connect tcp %d (failed %d), quic %d (failed %d); messages tcp %d (failed %d), quic %d (failed %d); propagation floor %v\n",
		tunnel, len(tcp.ConnectMS), tcp.ConnectFailed, len(quic.ConnectMS), quic.ConnectFailed,
		len(tcp.MessageMS), tcp.MessageFailed, len(quic.MessageMS), quic.MessageFailed, floor)
	for _, v := range []struct {
		name string
		m    measurement
	}{{"tcp", tcp}, {"quic", quic}} {
		res("connect_login_"+v.name+"_p50", pct(v.m.ConnectMS, 50), "ms")
		res("connect_login_"+v.name+"_p99", pct(v.m.ConnectMS, 99), "ms")
		res("connect_first_msg_"+v.name+"_p50", pct(v.m.FirstMsgMS, 50), "ms")
		res("connect_first_msg_"+v.name+"_p99", pct(v.m.FirstMsgMS, 99), "ms")
		res("msg_rtt_"+v.name+"_p50", pct(v.m.MessageMS, 50), "ms")
		res("msg_rtt_"+v.name+"_p99", pct(v.m.MessageMS, 99), "ms")
		if floor > 0 {
			res("msg_rtt_"+v.name+"_p99_over_floor", pct(v.m.MessageMS, 99)/ms(floor), "x")
		}
		fmt.Printf("# msg %s: p90 %.0f p95 %.0f p98 %.0f p99.5 %.0f ms, %.1f%% slower than p50 + 100 ms\n", v.name,
			pct(v.m.MessageMS, 90), pct(v.m.MessageMS, 95), pct(v.m.MessageMS, 98), pct(v.m.MessageMS, 99.5),
			slowShare(v.m.MessageMS))
	}
	res("msg_rtt_p99_reduction_quic", 100*(1-pct(quic.MessageMS, 99)/pct(tcp.MessageMS, 99)), "%")
}

func slowShare(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	cut, n := pct(v, 50)+100, 0
	for _, x := range v {
		if x > cut {
			n++
		}
	}
	return 100 * float64(n) / float64(len(v))
}

// worldFloor is the propagation round trip user → edge → core of the world
// file (the links' one-way delays both ways); 0 when it has no such links.
func worldFloor(path string) time.Duration {
	cfg, err := wan.Load(path)
	if err != nil {
		return 0
	}
	rtt := func(a, b string) time.Duration {
		for _, l := range cfg.Links {
			if (l.A == a && l.B == b) || (l.A == b && l.B == a) {
				ab, ba := l.Both, l.Both
				if l.AToB != nil {
					ab = *l.AToB
				}
				if l.BToA != nil {
					ba = *l.BToA
				}
				return ab.Delay.D() + ba.Delay.D()
			}
		}
		return 0
	}
	access, backbone := rtt("user", "edge"), rtt("edge", "core")
	if access == 0 || backbone == 0 {
		return 0
	}
	return access + backbone
}

// issueNodeCerts creates a cluster CA in dir and a certificate per node for
// its name, its world address and loopback, in the layout `longlink relay
// -issue` writes (name.pem, name-key.pem).
func issueNodeCerts(dir string, nodes map[string]string) error {
	ca, err := pki.LoadOrCreateCA(dir, "longlink-cluster")
	if err != nil {
		return err
	}
	for name, addr := range nodes {
		if err := ca.IssueFiles(filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem"), name, addr, "127.0.0.1"); err != nil {
			return err
		}
	}
	return nil
}

func waitFor(ctx context.Context, limit time.Duration, ok func() bool) error {
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return nil
}

// runSDKClient measures with core/sdk against target: connect-and-login
// (dial, Link handshake, login) with each demo account in parallel, then 1:1
// text messages between them, each timed from Send to the server's durable
// ack.
func runSDKClient(ctx context.Context, clientFile, target string, connects int, msgFor time.Duration, lo sdk.LinkOptions) error {
	cf, err := sdk.LoadClientFile(clientFile)
	if err != nil {
		return err
	}
	configFor := func(account string) (sdk.Config, error) {
		c, err := cf.Config(account)
		if err != nil {
			return c, err
		}
		c.Addresses = []string{target}
		c.ConnectTimeout = 20 * time.Second
		c.DeviceType = "phone"
		c.Link = lo
		return c, nil
	}
	var m measurement
	var mu sync.Mutex
	var wg sync.WaitGroup

	// Warm up both the path and the server (first logins touch cold caches).
	for _, a := range demoAccounts {
		cfg, err := configFor(a)
		if err != nil {
			return err
		}
		if _, err := connectOnce(ctx, cfg, ""); err != nil {
			return fmt.Errorf("warm-up login %s via %s: %w", a, target, err)
		}
	}

	per := (connects + len(demoAccounts) - 1) / len(demoAccounts)
	for _, a := range demoAccounts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfg, _ := configFor(a)
			for range per {
				if ctx.Err() != nil {
					return
				}
				d, err := connectOnce(ctx, cfg, "")
				mu.Lock()
				if err != nil {
					m.ConnectFailed++
					fmt.Fprintf(os.Stderr, "login %s via %s: %v\n", a, target, err)
				} else {
					m.ConnectMS = append(m.ConnectMS, ms(d))
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()

	// Connect, login and a first message until its ack, with fresh
	// clients (each account to the next one).
	for i, a := range demoAccounts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfg, _ := configFor(a)
			to := demoAccounts[(i+1)%len(demoAccounts)]
			for range per {
				if ctx.Err() != nil {
					return
				}
				d, err := connectOnce(ctx, cfg, to)
				mu.Lock()
				if err != nil {
					m.FirstMsgFailed++
					fmt.Fprintf(os.Stderr, "first message %s via %s: %v\n", a, target, err)
				} else {
					m.FirstMsgMS = append(m.FirstMsgMS, ms(d))
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()

	// Senders: every demo account on three devices (a device of another
	// type does not kick the first), each messaging the next account.
	deadline := time.Now().Add(msgFor)
	type sender struct{ account, device, to string }
	var senders []sender
	for i, a := range demoAccounts {
		for _, dev := range []string{"pc", "pad", "web"} {
			senders = append(senders, sender{a, dev, demoAccounts[(i+1)%len(demoAccounts)]})
		}
	}
	for i, s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfg, _ := configFor(s.account)
			cfg.DeviceType = s.device
			to := s.to
			c, err := sdk.New(cfg)
			if err != nil {
				return
			}
			defer c.Close()
			c.Start()
			go func() {
				for range c.Events() { // pushes of the messages sent to a
				}
			}()
			wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			err = c.WaitConnected(wctx)
			cancel()
			if err != nil {
				mu.Lock()
				m.MessageFailed++
				mu.Unlock()
				return
			}
			rng := rand.New(rand.NewPCG(uint64(i), 11))
			text := strings.Repeat("x", 200)
			for n := 0; time.Now().Before(deadline) && ctx.Err() == nil; n++ {
				sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				start := time.Now()
				_, err := c.SendText(sctx, imapi.ConvP2P, to, text)
				d := time.Since(start)
				cancel()
				mu.Lock()
				if err != nil {
					m.MessageFailed++
				} else {
					m.MessageMS = append(m.MessageMS, ms(d))
				}
				mu.Unlock()
				time.Sleep(time.Duration(20+rng.IntN(60)) * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	return json.NewEncoder(os.Stdout).Encode(m)
}

// connectOnce starts a fresh client, waits until it is logged in and, when
// to is set, until one text to it is acknowledged; it returns the time since
// the start.
func connectOnce(ctx context.Context, cfg sdk.Config, to string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	start := time.Now()
	c, err := sdk.New(cfg)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.Start()
	go func() {
		for range c.Events() {
		}
	}()
	if err := c.WaitConnected(ctx); err != nil {
		return 0, err
	}
	if to != "" {
		if _, err := c.SendText(ctx, imapi.ConvP2P, to, "first"); err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}
