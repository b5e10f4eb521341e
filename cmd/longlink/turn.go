package main

import (
	"context"
	"flag"

	"github.com/longlink/longlink/edge/turn"
)

func init() {
	register(command{name: "turn", summary: "run a standalone TURN server (RFC 8656) for relayed audio/video", run: runTURN})
}

// runTURN serves TURN alone, for a core site without an edge. On SIGTERM it
// drains: /readyz turns false, new allocations are refused, and existing
// ones relay until they end or -shutdown-timeout passes.
func runTURN(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("turn", flag.ContinueOnError)
	var cf commonFlags
	cf.bind(fs)
	debugAddr := fs.String("debug-addr", "127.0.0.1:7739", "debug listener (/metrics, /healthz, /readyz, pprof); empty disables it")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log, err := cf.logger("turn")
	if err != nil {
		return err
	}
	load := func() (turn.Config, error) {
		cfg := turn.Default()
		err := loadConfig(cf, &cfg)
		return cfg, err
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	if cf.checkConfig {
		return printConfig(cf, &cfg)
	}
	reg := newRegistry()
	srv, err := turn.New(cfg, turn.Deps{Logger: log, Registerer: reg})
	if err != nil {
		return err
	}
	return serveComponent(ctx, log, reg, *debugAddr, "turn", srv, cf.shutdown, fileReload(cf, log, load, srv.Reload))
}
