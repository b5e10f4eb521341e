package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/longlink/longlink/lbs"
	"github.com/longlink/longlink/pkg/config"
)

func init() {
	register(command{name: "lbs", summary: "run an LBS cluster member (entry point selection, DNS, admin API)", run: runLBS})
}

// rawLBSConfig decodes without validating, so that flags can fill in
// before the one validation.
type rawLBSConfig lbs.Config

func runLBS(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("lbs", flag.ContinueOnError)
	var cf commonFlags
	cf.bind(fs)
	debugAddr := fs.String("debug-addr", "127.0.0.1:7709", "debug listener (/metrics, /healthz, /readyz, pprof); empty disables it")
	nodeID := fs.String("node-id", "", "raft member id (overrides node_id)")
	dataDir := fs.String("data-dir", "", "raft log, snapshots (overrides data_dir)")
	bootstrap := fs.Bool("bootstrap", false, "create the cluster on first start (alone, or with -peers)")
	peers := fs.String("peers", "", "initial voters for -bootstrap: id=raft-addr,id=raft-addr,…")
	join := fs.String("join", "", "admin URLs of existing members to ask for membership: https://host:7701,…")
	raftAdvertise := fs.String("raft-advertise", "", "raft address peers dial (overrides raft_advertise; a StatefulSet pod's stable name)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log, err := cf.logger("lbs")
	if err != nil {
		return err
	}
	// load reads the file and applies the flags: at start, and again for a
	// reload (SIGHUP, ctl reload).
	load := func() (lbs.Config, error) {
		cfg := lbs.Default()
		if cf.config != "" {
			b, err := os.ReadFile(cf.config)
			if err != nil {
				return cfg, err
			}
			if err := config.Decode(cf.config, b, (*rawLBSConfig)(&cfg)); err != nil {
				return cfg, err
			}
		}
		if *raftAdvertise != "" {
			cfg.RaftAdvertise = *raftAdvertise
		}
		return cfg, lbsFlags(&cfg, *nodeID, *dataDir, *bootstrap, *peers, *join)
	}
	cfg, err := load()
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		return withFileChecks(cf, err)
	}
	if cf.checkConfig {
		return printConfig(cf, &cfg)
	}
	reg := newRegistry()
	deps := lbs.Deps{Logger: log, Registerer: reg}
	if cf.config != "" {
		deps.Reload = load
	}
	node, err := lbs.New(cfg, deps)
	if err != nil {
		return err
	}
	var reload func() error
	if cf.config != "" {
		reload = func() error {
			applied, err := node.ReloadFromSource()
			if err == nil {
				log.Info("config reloaded", "file", cf.config, "applied", strings.Join(applied, ","))
			}
			return err
		}
	}
	err = serveComponent(ctx, log, reg, *debugAddr, "lbs", node, cf.shutdown, reload)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// lbsFlags applies the command line's overrides to cfg.
func lbsFlags(cfg *lbs.Config, nodeID, dataDir string, bootstrap bool, peers, join string) error {
	if nodeID != "" {
		cfg.NodeID = nodeID
	}
	if dataDir != "" {
		cfg.DataDir = dataDir
	}
	if bootstrap {
		cfg.Cluster.Bootstrap = true
	}
	if peers != "" {
		cfg.Cluster.Peers = nil
		for _, p := range strings.Split(peers, ",") {
			id, addr, ok := strings.Cut(p, "=")
			if !ok {
				return fmt.Errorf("-peers: %q is not id=address", p)
			}
			cfg.Cluster.Peers = append(cfg.Cluster.Peers, lbs.Peer{ID: id, Address: addr})
		}
	}
	if join != "" {
		cfg.Cluster.Join = strings.Split(join, ",")
	}
	return nil
}
