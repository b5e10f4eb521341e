package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"

	"github.com/longlink/longlink/edge"
	"github.com/longlink/longlink/pkg/debugsrv"
	"github.com/longlink/longlink/pkg/lifecycle"
	"github.com/prometheus/client_golang/prometheus"
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
	cfg := edge.Default()
	if err := loadConfig(cf, &cfg); err != nil {
		return err
	}
	if cf.checkConfig {
		return printConfig(&cfg)
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
	g := lifecycle.NewGroup(log)
	dbg, err := debugComponent(*debugAddr, reg, log)
	if err != nil {
		return err
	}
	if dbg != nil {
		g.Add("debug", dbg)
	}
	g.Add("edge", readiness(dbg, e))
	return serve(ctx, log, g, cf.shutdown)
}

// debugServer wraps pkg/debugsrv as a lifecycle component.
type debugServer struct{ srv *debugsrv.Server }

func debugComponent(addr string, reg *prometheus.Registry, log *slog.Logger) (*debugServer, error) {
	if addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("debug listener: %w", err)
	}
	log.Info("debug listener", "addr", ln.Addr().String())
	return &debugServer{srv: debugsrv.New(ln, reg, log)}, nil
}

func (d *debugServer) Start(context.Context) error        { d.srv.Start(); return nil }
func (d *debugServer) Shutdown(ctx context.Context) error { return d.srv.Shutdown(ctx) }

// readiness marks /readyz ready once c has started and not ready as soon as
// it starts draining, so load balancers stop sending before sessions are shed.
func readiness(d *debugServer, c lifecycle.Component) lifecycle.Component {
	return lifecycle.Func{
		StartFunc: func(ctx context.Context) error {
			if err := c.Start(ctx); err != nil {
				return err
			}
			if d != nil {
				d.srv.SetReady(true)
			}
			return nil
		},
		ShutdownFunc: func(ctx context.Context) error {
			if d != nil {
				d.srv.SetReady(false)
			}
			return c.Shutdown(ctx)
		},
	}
}
