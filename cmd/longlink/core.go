package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.yaml.in/yaml/v3"

	"github.com/longlink/longlink/core"
	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/pkg/lifecycle"
)

func init() {
	register(command{name: "core", summary: "run an IM core node (gateway, app services, server API)", run: runCore})
}

func runCore(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("core", flag.ContinueOnError)
	var cf commonFlags
	cf.bind(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	load := func() (core.Config, error) {
		cfg := core.Default()
		if err := loadConfig(cf, &cfg); err != nil {
			return cfg, err
		}
		cfg.LBS.Version = version
		return cfg, nil
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	if cf.checkConfig {
		return printConfig(cf, &cfg)
	}
	log, err := cf.logger("core")
	if err != nil {
		return err
	}
	reg := newRegistry()
	node, err := core.New(cfg, core.Deps{Logger: log, Registerer: reg, Gatherer: reg, Version: version})
	if err != nil {
		return err
	}
	g := lifecycle.NewGroup(log)
	g.Add("core", node)
	return serve(ctx, log, g, cf.shutdown, fileReload(cf, log, load, node.Reload))
}

// loadConfig decodes the -config file over the defaults in dst and
// validates the result (also when there is no file).
func loadConfig(cf commonFlags, dst config.Validator) error {
	if cf.config != "" {
		return withFileChecks(cf, config.Load(cf.config, dst))
	}
	return dst.Validate()
}

// withFileChecks adds, for --check-config, the problems with the files the
// config names to a config that failed to load: every problem at once.
func withFileChecks(cf commonFlags, err error) error {
	if err == nil || !cf.checkConfig || cf.config == "" {
		return err
	}
	b, rerr := os.ReadFile(cf.config)
	if rerr != nil {
		return err
	}
	if ferr := config.CheckFiles(cf.config, b); ferr != nil {
		return errors.Join(err, fmt.Errorf("config %s: %w", cf.config, ferr))
	}
	return err
}

// printConfig is --check-config once the file decoded and validated: it
// checks the files and directories the file names (every problem with its
// key and line), then writes the effective configuration (secrets
// redacted).
func printConfig(cf commonFlags, cfg any) error {
	if cf.config != "" {
		b, err := os.ReadFile(cf.config)
		if err != nil {
			return err
		}
		if err := config.CheckFiles(cf.config, b); err != nil {
			return fmt.Errorf("config %s: %w", cf.config, err)
		}
	}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "config ok")
	_, err = os.Stdout.Write(out)
	return err
}

// newRegistry is a process's metrics registry, with the Go runtime and
// process collectors that every dashboard expects.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}
