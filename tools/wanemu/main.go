// Command wanemu runs an emulated WAN: network namespaces joined by links with
// delay, jitter, loss, bandwidth limits and reordering, until interrupted.
//
//	go run ./tools/wanemu -world tools/wanemu/worlds/standard.yaml
//	go run ./tools/wanemu -world w.yaml -check-config
//	go run ./tools/wanemu -clean
//	go run ./tools/wanemu -udp-listen 127.0.0.1:9000 -udp-target 127.0.0.1:9001 -impair link.yaml
//
// While a world runs, `ip netns exec <namespace> <command>` runs programs in
// its nodes; the namespaces are printed at start. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/tools/wanemu/wan"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "wanemu:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		worldPath   = flag.String("world", "", "world file (YAML) to run")
		checkConfig = flag.Bool("check-config", false, "validate the world or impairment file and exit")
		clean       = flag.Bool("clean", false, "delete namespaces left by emulator runs that died, then exit")
		udpListen   = flag.String("udp-listen", "", "UDP proxy mode: listen on this loopback address")
		udpTarget   = flag.String("udp-target", "", "UDP proxy mode: forward to this loopback address")
		impairPath  = flag.String("impair", "", "UDP proxy mode: YAML with 'up' and 'down' impairments")
		metricsAddr = flag.String("metrics", "", "serve /metrics on this address (e.g. 127.0.0.1:7799)")
		logLevel    = flag.String("log-level", "info", "debug, info, warn or error")
	)
	flag.Parse()
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if *clean {
		removed, err := wan.CleanStale(ctx)
		for _, n := range removed {
			fmt.Println("deleted", n)
		}
		return err
	}
	reg := prometheus.NewRegistry()
	var comp interface {
		Start(context.Context) error
		Shutdown(context.Context) error
	}
	switch {
	case *worldPath != "" && *udpListen == "":
		cfg, err := wan.Load(*worldPath)
		if err != nil {
			return err
		}
		if *checkConfig {
			fmt.Println("world ok:", *worldPath)
			return nil
		}
		w, err := wan.New(cfg, wan.Deps{Logger: log, Registerer: reg})
		if err != nil {
			return err
		}
		if err := w.Start(ctx); err != nil {
			return err
		}
		for _, n := range w.Nodes() {
			fmt.Printf("node %-8s %-15s ip netns exec %s ...\n", n, w.Addr(n), w.Namespace(n))
		}
		comp = w
	case *udpListen != "" && *udpTarget != "" && *worldPath == "":
		pc := wan.DefaultProxyConfig()
		pc.Listen, pc.Target = *udpListen, *udpTarget
		if *impairPath != "" {
			if err := config.Load(*impairPath, &pc); err != nil {
				return err
			}
		} else if err := pc.Validate(); err != nil {
			return err
		}
		if *checkConfig {
			fmt.Println("proxy config ok")
			return nil
		}
		p, err := wan.NewUDPProxy(pc, wan.Deps{Logger: log, Registerer: reg})
		if err != nil {
			return err
		}
		if err := p.Start(ctx); err != nil {
			return err
		}
		fmt.Printf("udp proxy %s -> %s\n", p.Addr(), pc.Target)
		comp = p
	default:
		flag.Usage()
		return errors.New("give -world FILE, or -udp-listen and -udp-target, or -clean")
	}
	var srv *http.Server
	if *metricsAddr != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		srv = &http.Server{Addr: *metricsAddr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics listener", "err", err)
			}
		}()
	}
	<-ctx.Done()
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if srv != nil {
		_ = srv.Shutdown(sctx)
	}
	return comp.Shutdown(sctx)
}
