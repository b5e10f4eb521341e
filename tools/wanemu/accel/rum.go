package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/longlink/longlink/core/sdk"
	"github.com/longlink/longlink/lbs/lbsclient"
)

// This file is -mode rum (issue 17 part 4, steering by what users
// measure): the real Longlink in worlds/rum.yaml — `longlink dev` (core,
// LBS) and `relay -egress` in core, `longlink edge` in near and far —
// and core/sdk clients in user that resolve through the LBS, race its
// candidates and report what they measured (sdk.LBSReporter). The geo
// database puts the user beside edge near, whose path is poor; edge far
// is farther and good. Phases: clients that do not report (before), a few
// that do (learning), clients that do not report (after). Figures:
// rum_connect_* before and after.

const rumWorld = "tools/wanemu/worlds/rum.yaml"

// rumMeasurement is one rumclient run (JSON on stdout).
type rumMeasurement struct {
	ConnectMS []float64      `json:"connect_ms"` // Start → logged in, the LBS answer already in hand
	Failed    int            `json:"failed"`
	First     map[string]int `json:"first"` // the answer's first entry point
	Reports   int            `json:"reports"`
}

// runRUMClient connects `connects` fresh clients one after the other: each
// asks the LBS (a new lbsclient, no cache), then connects and logs in with
// core/sdk over the answer's candidates; with report, each posts what its
// race measured and waits for the post.
func runRUMClient(ctx context.Context, clientFile, lbsURL string, connects int, report bool) error {
	cf, err := sdk.LoadClientFile(clientFile)
	if err != nil {
		return err
	}
	m := rumMeasurement{First: map[string]int{}}
	for i := range connects {
		if ctx.Err() != nil {
			break
		}
		account := demoAccounts[i%len(demoAccounts)]
		cfg, err := cf.Config(account)
		if err != nil {
			return err
		}
		lc, err := lbsclient.New(lbsclient.Config{Servers: []string{lbsURL}, AppKey: cfg.AppKey, SDK: sdk.Version}, &http.Client{}, nil)
		if err != nil {
			return err
		}
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		a, err := lc.Refresh(rctx)
		cancel()
		if err != nil {
			return fmt.Errorf("LBS: %w", err)
		}
		m.First[a.Link[0].ID]++
		cfg.Addresses = nil
		cfg.Resolver = sdk.LBSResolver(lc)
		cfg.ConnectTimeout = 20 * time.Second
		cfg.DeviceType = "phone"
		done := make(chan error, 1)
		if report {
			rep := sdk.LBSReporter(lc, sdk.ReportOptions{MinInterval: -1})
			rep.Done = func(err error) { done <- err }
			cfg.Reporter = rep.Report
		}
		d, err := connectOnce(ctx, cfg, "")
		if err != nil {
			m.Failed++
			fmt.Fprintf(os.Stderr, "rumclient %s: %v\n", account, err)
			continue
		}
		m.ConnectMS = append(m.ConnectMS, ms(d))
		if report {
			select {
			case err := <-done:
				if err != nil {
					return fmt.Errorf("report: %w", err)
				}
				m.Reports++
			case <-time.After(10 * time.Second):
				return errors.New("no report posted")
			}
		}
	}
	return json.NewEncoder(os.Stdout).Encode(m)
}

// rumBench runs the world and the three phases.
func rumBench(ctx context.Context, log *slog.Logger, f flags) error {
	w, dir, stop, err := startWorld(ctx, log, f.world, "user", "near", "far", "core")
	if err != nil {
		return err
	}
	defer stop()
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	core, near, far := w.Addr("core").String(), w.Addr("near").String(), w.Addr("far").String()
	run, err := newLonglinkRun(ctx, w, dir, map[string]string{"near": near, "far": far, "core": core})
	if err != nil {
		return err
	}
	defer run.finish()
	// The LBS answers the user on the core's world address; the geo
	// database puts the world's subnet in Singapore, beside edge near.
	devYAML := `
core:
  gateway:
    listen: 0.0.0.0:7710
    trusted_proxies: [127.0.0.1/32]
lbs:
  client_listen: 0.0.0.0:7700
  geo:
    overrides:
      - {cidr: 10.99.0.0/24, country: SG, continent: AS, lat: 1.35, lon: 103.82}
`
	if _, err := run.config("dev.yaml", devYAML); err != nil {
		return err
	}
	if _, err := run.config("egress.yaml", fmt.Sprintf(`
name: core-egress
cluster: default
listen: {quic: "%[1]s:7745"}
%[2]s
services:
  link: {kind: link, address: "127.0.0.1:7710"}
  link-frames: {kind: link-frames, address: "127.0.0.1:7713"}
`, core, run.security("core"))); err != nil {
		return err
	}
	devDir := filepath.Join(dir, "dev")
	if _, err := run.start(ctx, "core", nil, "dev", "-dir", devDir, "-config", filepath.Join(dir, "dev.yaml")); err != nil {
		return err
	}
	clientFile := filepath.Join(devDir, "client.json")
	if err := waitFor(ctx, 90*time.Second, func() bool { _, err := os.Stat(clientFile); return err == nil }); err != nil {
		return fmt.Errorf("longlink dev did not write %s: %w", clientFile, err)
	}
	var st struct {
		ID             string `json:"link_key_id"`
		Private        string `json:"link_private_key"`
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
	terminate := fmt.Sprintf(", terminate: {keys: [{id: %q, private_key: \"file:%s\"}], token_keys: [{id: %q, public_key: %q}]}",
		st.ID, filepath.Join(dir, "link.key"), st.TokenKeyID, st.TokenPublicKey)
	if _, err := run.start(ctx, "core", nil, "relay", "-egress", "-config", filepath.Join(dir, "egress.yaml"), "-debug-addr", ""); err != nil {
		return err
	}
	for _, e := range []struct{ node, addr string }{{"near", near}, {"far", far}} {
		yaml := fmt.Sprintf(`
name: edge-%[1]s
cluster: default
link: {listen: "%[2]s:7720", service: link%[3]s}
weblink: {listen: ""}
%[4]s
routing:
  routes:
    - cluster: default
      direct: {name: core, transport: quic, address: "%[5]s:7745"}
`, e.node, e.addr, terminate, run.security(e.node), core)
		path, err := run.config("edge-"+e.node+".yaml", yaml)
		if err != nil {
			return err
		}
		if _, err := run.start(ctx, e.node, nil, "edge", "-config", path, "-debug-addr", ""); err != nil {
			return err
		}
	}
	// The policy: the demo app's pool is the two edges, near in
	// Singapore beside the user, far in Tokyo.
	policy := fmt.Sprintf(`
description: rum benchmark
defaults: {count: 2, ttl: 30s}
apps:
  - {appkey: %[3]s, pools: [edges]}
pools:
  - {name: edges, entry_points: [edge-near, edge-far]}
entry_points:
  - {id: edge-near, site: sg, lat: 1.29, lon: 103.85, country: SG, continent: AS, link: "%[1]s:7720", key_ids: [%[4]q]}
  - {id: edge-far, site: tyo, lat: 35.68, lon: 139.69, country: JP, continent: AS, link: "%[2]s:7720", key_ids: [%[4]q]}
rum: {min_samples: 3}
`, near, far, devAppKey(clientFile), st.ID)
	policyPath, err := run.config("policy.yaml", policy)
	if err != nil {
		return err
	}
	apply, err := w.Command(ctx, "core", run.bin, "ctl", "-ctl-config", filepath.Join(devDir, "lbs", "ctl.yaml"),
		"policy", "apply", "-f", policyPath, "-m", "rum benchmark")
	if err != nil {
		return err
	}
	if err := waitFor(ctx, 60*time.Second, func() bool {
		_, err := os.Stat(filepath.Join(devDir, "lbs", "ctl.yaml"))
		return err == nil
	}); err != nil {
		return errors.New("longlink dev wrote no ctl.yaml")
	}
	if out, err := runOutput(w, apply); err != nil {
		return fmt.Errorf("policy apply: %v: %s", err, out)
	}
	lbsURL := "http://" + core + ":7700"
	phase := func(name string, n int, report bool) (rumMeasurement, error) {
		var m rumMeasurement
		cmd, err := w.Command(ctx, "user", exe, "-role", "rumclient", "-clientfile", clientFile, "-lbs", lbsURL,
			"-connects", fmt.Sprint(n), fmt.Sprintf("-report=%v", report))
		if err != nil {
			return m, err
		}
		out, err := runOutput(w, cmd)
		if err != nil {
			return m, fmt.Errorf("%s: %w", name, err)
		}
		if err := json.Unmarshal(out, &m); err != nil {
			return m, fmt.Errorf("%s: %w", name, err)
		}
		fmt.Printf("# %s: %d connects (failed %d), first in the answer %v, reports %d\n", name, len(m.ConnectMS), m.Failed, m.First, m.Reports)
		return m, nil
	}
	// Warm the edges' tunnels and the core before measuring.
	if err := waitFor(ctx, 60*time.Second, func() bool { _, err := phase("warm-up", 1, false); return err == nil }); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	before, err := phase("before", f.plan.connects, false)
	if err != nil {
		return err
	}
	if _, err := phase("learning", 3, true); err != nil {
		return err
	}
	// The member proposes what it gathered every rum.interval (2s).
	time.Sleep(3 * time.Second)
	after, err := phase("after", f.plan.connects, false)
	if err != nil {
		return err
	}
	for _, r := range []struct {
		name string
		v    float64
	}{
		{"connect_before_p50", pct(before.ConnectMS, 50)},
		{"connect_before_p99", pct(before.ConnectMS, 99)},
		{"connect_after_p50", pct(after.ConnectMS, 50)},
		{"connect_after_p99", pct(after.ConnectMS, 99)},
	} {
		fmt.Printf("RESULT rum_%s %.2f ms\n", r.name, r.v)
	}
	fmt.Printf("RESULT rum_first_far_before %d of %d\n", before.First["edge-far"], f.plan.connects)
	fmt.Printf("RESULT rum_first_far_after %d of %d\n", after.First["edge-far"], f.plan.connects)
	if f.measuredRUM != nil {
		f.measuredRUM(before, after)
	}
	printLinkStats(w)
	return nil
}

// devAppKey reads the demo app's key from the client file.
func devAppKey(clientFile string) string {
	var c struct {
		AppKey string `json:"appkey"`
	}
	b, _ := os.ReadFile(clientFile)
	_ = json.Unmarshal(b, &c)
	if c.AppKey == "" {
		return "demo"
	}
	return c.AppKey
}
