// Command longlink is the one binary of Longlink. Each role is a subcommand:
//
//	longlink dev      all-in-one on embedded defaults (LBS, core, edge, relay, TURN)
//	longlink core     an IM core node (gateways, app services)
//	longlink lbs      an LBS cluster member
//	longlink edge     an edge node
//	longlink relay    a backbone relay
//	longlink turn     a standalone TURN server
//	longlink ctl      the operator's client of the LBS admin API
//	longlink chat     a terminal chat client
//	longlink version  print the version
//
// Only this package reads flags, environment variables and files; every
// component receives a validated Config and its dependencies.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/longlink/longlink/pkg/debugsrv"
	"github.com/longlink/longlink/pkg/lifecycle"
	"github.com/longlink/longlink/pkg/sdnotify"
)

// version and commit are set at build time with -ldflags
// "-X main.version=… -X main.commit=…"; a build that stamped VCS data
// (go build without -buildvcs=false) fills the commit from build info.
var (
	version = "dev"
	commit  = ""
)

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string) error
}

var commands = map[string]command{}

func register(c command) {
	if _, dup := commands[c.name]; dup {
		panic("longlink: duplicate command " + c.name)
	}
	commands[c.name] = c
}

func init() {
	register(command{name: "version", summary: "print the version, commit and Go version", run: func(context.Context, []string) error {
		fmt.Print(versionText())
		return nil
	}})
	register(command{name: "probe", summary: "exit 0 when a URL answers 200 (container health checks)", run: probe})
}

// probe is a container health check for images without a shell or curl
// (compose's healthcheck): it exits 0 when url answers 200.
func probe(ctx context.Context, args []string) error {
	if len(args) != 1 {
		return &exitError{code: 2, err: errors.New("usage: longlink probe http://127.0.0.1:7709/readyz")}
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, args[0], nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", args[0], resp.Status)
	}
	return nil
}

// versionText is what `longlink version` prints: the version, the commit
// (with its time and "modified" for a dirty tree, when build info has them)
// and the Go toolchain that built the binary.
func versionText() string {
	rev, at, modified, goVersion := commit, "", false, runtime.Version()
	if bi, ok := debug.ReadBuildInfo(); ok {
		goVersion = bi.GoVersion
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if rev == "" {
					rev = s.Value
				}
			case "vcs.time":
				at = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	if rev == "" {
		rev = "unknown"
	}
	if at != "" {
		rev += " (" + at + ")"
	}
	if modified {
		rev += " modified"
	}
	return fmt.Sprintf("longlink %s\ncommit   %s\ngo       %s %s/%s\n", version, rev, goVersion, runtime.GOOS, runtime.GOARCH)
}

// exitError ends the process with its code (after printing err, if any):
// commands whose exit code carries meaning, such as `ctl policy diff`.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}
func (e *exitError) Unwrap() error { return e.err }

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: longlink <command> [flags]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-8s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'longlink <command> -h' for a command's flags.")
}

func main() {
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		usage(os.Stderr)
		os.Exit(2)
	}
	c, ok := commands[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "longlink: unknown command %q\n\n", os.Args[1])
		usage(os.Stderr)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := c.run(ctx, os.Args[2:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		code := 1
		var ee *exitError
		if errors.As(err, &ee) {
			code = ee.code
			if ee.err == nil {
				os.Exit(code)
			}
		}
		fmt.Fprintf(os.Stderr, "longlink %s: %v\n", c.name, err)
		os.Exit(code)
	}
}

// commonFlags are the flags every server role has.
type commonFlags struct {
	config      string
	checkConfig bool
	logLevel    string
	logFormat   string
	shutdown    time.Duration
}

func (f *commonFlags) bind(fs *flag.FlagSet) {
	fs.StringVar(&f.config, "config", "", "YAML config file (defaults apply to keys it does not set)")
	fs.BoolVar(&f.checkConfig, "check-config", false, "load and validate the config, print it, and exit")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&f.logFormat, "log-format", "text", "text or json")
	fs.DurationVar(&f.shutdown, "shutdown-timeout", 30*time.Second, "how long a graceful shutdown may take")
}

func (f *commonFlags) logger(role string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(f.logLevel)); err != nil {
		return nil, fmt.Errorf("-log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	var h slog.Handler
	switch strings.ToLower(f.logFormat) {
	case "text":
		h = slog.NewTextHandler(os.Stderr, opts)
	case "json":
		h = slog.NewJSONHandler(os.Stderr, opts)
	default:
		return nil, fmt.Errorf("-log-format: %q is not text or json", f.logFormat)
	}
	return slog.New(h).With("role", role), nil
}

// serveComponent runs one role's component behind a debug listener
// (/metrics, /healthz, /readyz, pprof; none when debugAddr is empty) whose
// /readyz is true only while the component runs and turns false first on
// shutdown, so load balancers stop sending before sessions are shed. A
// component with a Ready() error method (the LBS, until it has caught up
// with its cluster) is not ready while that returns an error.
// reload, when not nil, runs on SIGHUP.
func serveComponent(ctx context.Context, log *slog.Logger, reg *prometheus.Registry, debugAddr, name string, c lifecycle.Component, shutdown time.Duration, reload func() error) error {
	g := lifecycle.NewGroup(log)
	var dbg *debugsrv.Server
	if debugAddr != "" {
		ln, err := net.Listen("tcp", debugAddr)
		if err != nil {
			return fmt.Errorf("debug listener: %w", err)
		}
		log.Info("debug listener", "addr", ln.Addr().String())
		var checks []func() error
		if r, ok := c.(interface{ Ready() error }); ok {
			checks = append(checks, r.Ready)
		}
		dbg = debugsrv.New(ln, reg, log, checks...)
		g.Add("debug", lifecycle.Func{
			StartFunc:    func(context.Context) error { dbg.Start(); return nil },
			ShutdownFunc: dbg.Shutdown,
		})
	}
	g.Add(name, lifecycle.Func{
		StartFunc: func(ctx context.Context) error {
			if err := c.Start(ctx); err != nil {
				return err
			}
			if dbg != nil {
				dbg.SetReady(true)
			}
			return nil
		},
		ShutdownFunc: func(ctx context.Context) error {
			if dbg != nil {
				dbg.SetReady(false)
			}
			return c.Shutdown(ctx)
		},
	})
	return serve(ctx, log, g, shutdown, reload)
}

// serve starts the group, tells systemd it is ready (Type=notify), runs
// reload on every SIGHUP (a role without reloadable config logs that it has
// none), waits for ctx (the signal), then shuts down within the configured
// time.
func serve(ctx context.Context, log *slog.Logger, g *lifecycle.Group, shutdown time.Duration, reload func() error) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if err := g.Start(ctx); err != nil {
		return err
	}
	notify(log, sdnotify.Ready)
	for {
		select {
		case <-hup:
			if reload == nil {
				log.Warn("SIGHUP ignored: started without -config, there is no file to read again")
				continue
			}
			notify(log, sdnotify.ReloadingNow())
			if err := reload(); err != nil {
				log.Error("config reload refused; the running config is unchanged", "err", err)
			}
			notify(log, sdnotify.Ready)
			continue
		case <-ctx.Done():
		}
		break
	}
	notify(log, sdnotify.Stopping)
	log.Info("shutting down", "timeout", shutdown)
	sctx, cancel := context.WithTimeout(context.Background(), shutdown)
	defer cancel()
	return g.Shutdown(sctx)
}

// fileReload is a role's SIGHUP handler: it reads the -config file again
// (load: over the role's defaults, validated, with the same flag overrides
// as at start) and hands it to apply, which applies the reloadable keys or
// refuses, naming the others. nil when the role started without a file.
func fileReload[C any](cf commonFlags, log *slog.Logger, load func() (C, error), apply func(C) ([]string, error)) func() error {
	if cf.config == "" {
		return nil
	}
	return func() error {
		next, err := load()
		if err != nil {
			return err
		}
		applied, err := apply(next)
		if err != nil {
			return err
		}
		if len(applied) == 0 {
			log.Info("config reloaded: nothing changed", "file", cf.config)
			return nil
		}
		log.Info("config reloaded", "file", cf.config, "applied", strings.Join(applied, ","))
		return nil
	}
}

func notify(log *slog.Logger, state string) {
	if _, err := sdnotify.Notify(state); err != nil {
		log.Warn("systemd notification failed", "err", err)
	}
}
