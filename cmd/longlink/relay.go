package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/longlink/longlink/pkg/pki"

	"github.com/longlink/longlink/relay"
)

func init() {
	register(command{name: "relay", summary: "run a backbone relay (or, with -egress, a standalone core egress)", run: runRelay})
}

func runRelay(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("relay", flag.ContinueOnError)
	var cf commonFlags
	cf.bind(fs)
	debugAddr := fs.String("debug-addr", "127.0.0.1:7749", "debug listener (/metrics, /healthz, /readyz, pprof); empty disables it")
	egress := fs.Bool("egress", false, "the config is an egress config: terminate tunnels for its cluster at this site (longlink core normally runs the egress in-process)")
	pkiDir := fs.String("pki", "", "with -issue: the cluster CA directory (ca.pem, ca-key.pem; created when missing)")
	issue := fs.String("issue", "", "issue node certificates for these comma-separated names into -pki (name.pem, name-key.pem), then exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *issue != "" {
		return issueCerts(*pkiDir, strings.Split(*issue, ","))
	}
	log, err := cf.logger("relay")
	if err != nil {
		return err
	}
	reg := newRegistry()
	deps := relay.Deps{Logger: log, Registerer: reg}
	var node *relay.Node
	var reload func() error
	if *egress {
		load := func() (relay.EgressConfig, error) {
			cfg := relay.DefaultEgress()
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
		if node, err = relay.NewEgress(cfg, deps); err != nil {
			return err
		}
		reload = fileReload(cf, log, load, node.ReloadEgress)
	} else {
		load := func() (relay.Config, error) {
			cfg := relay.Default()
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
		if node, err = relay.New(cfg, deps); err != nil {
			return err
		}
		reload = fileReload(cf, log, load, node.Reload)
	}
	return serveComponent(ctx, log, reg, *debugAddr, "relay", node, cf.shutdown, reload)
}

// issueCerts creates node certificates from the cluster CA in dir, for
// setting up edges and relays by hand (and for the WAN emulator's worlds).
// Each certificate is valid for its name and 127.0.0.1.
func issueCerts(dir string, names []string) error {
	if dir == "" {
		return errors.New("-issue needs -pki DIR")
	}
	ca, err := pki.LoadOrCreateCA(dir, "longlink-cluster")
	if err != nil {
		return err
	}
	for _, n := range names {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		certFile, keyFile := filepath.Join(dir, n+".pem"), filepath.Join(dir, n+"-key.pem")
		if err := ca.IssueFiles(certFile, keyFile, n, "127.0.0.1", "::1"); err != nil {
			return err
		}
		fmt.Printf("%s: %s %s\n", n, certFile, keyFile)
	}
	return nil
}
