package main

import (
	"context"
	"flag"

	"github.com/longlink/longlink/edge"
)

func init() {
	register(command{name: "edge", summary: "run an edge node (Link, WebLink, UDP and TURN near users, tunnels to the core)", run: runEdge})
}

func runEdge(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("edge", flag.ContinueOnError)
	var cf commonFlags
	cf.bind(fs)
	debugAddr := fs.String("debug-addr", "127.0.0.1:7729", "debug listener (/metrics, /healthz, /readyz, pprof); empty disables it")
	if err := fs.Parse(args); err != nil {
		return err
	}
	load := func() (edge.Config, error) {
		cfg := edge.Default()
		if err := loadConfig(cf, &cfg); err != nil {
			return cfg, err
		}
		if cfg.LBS != nil {
			cfg.LBS.Version = version
		}
		return cfg, nil
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	if cf.checkConfig {
		return printConfig(cf, &cfg)
	}
	log, err := cf.logger("edge")
	if err != nil {
		return err
	}
	reg := newRegistry()
	e, err := edge.New(cfg, edge.Deps{Logger: log, Registerer: reg})
	if err != nil {
		return err
	}
	return serveComponent(ctx, log, reg, *debugAddr, "edge", e, cf.shutdown, fileReload(cf, log, load, e.Reload))
}
