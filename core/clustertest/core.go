package clustertest

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/longlink/longlink/core/link"
)

// App is an app the service nodes seed.
type App struct {
	AppKey, Secret string
	// Devices is the multi-device policy (default allow_all, so that a
	// test's several clients of one account do not kick each other).
	Devices string
}

// CoreOptions shape one `longlink core` process.
type CoreOptions struct {
	// Name names the process, its files and (for a gateway) its gateway id.
	Name string
	// Site places it (nil: the environment's).
	Site *Site
	// Gateway runs the Link gateway, WebLink and the server API's front;
	// Services runs the app services (which answer the server API requests
	// the fronts forward). One process may run both.
	Gateway, Services bool
	// Config is merged over the generated configuration (nested maps, as
	// in the YAML file: {"gateway": {"request_timeout": "2s"}}).
	Config map[string]any
	// LogLevel of the process. Default info.
	LogLevel string
}

// Core is one running `longlink core` process.
type Core struct {
	*Proc
	Options CoreOptions
	// ConfigPath is its YAML file.
	ConfigPath string
	// LinkAddr, WebLinkAddr and APIAddr (gateways) are its listeners;
	// DebugAddr serves /metrics and /readyz.
	LinkAddr, WebLinkAddr, APIAddr, DebugAddr string
}

// CoreDeps are what a core process connects to: the bus, the store, the
// Link key and the apps. A Cluster fills them in.
type CoreDeps struct {
	NATS *NATS
	PG   *Postgres
	Key  link.KeyPair
	Apps []App
}

// StartCore writes the process's configuration and starts it, and waits
// until its /readyz answers 200.
func (e *Env) StartCore(d CoreDeps, o CoreOptions) *Core {
	e.t.Helper()
	c := e.PrepareCore(d, o)
	if err := c.Start(); err != nil {
		e.t.Fatal(err)
	}
	if err := c.WaitReady(60 * time.Second); err != nil {
		e.t.Fatal(err)
	}
	return c
}

// PrepareCore writes the configuration of a core process without starting it.
func (e *Env) PrepareCore(d CoreDeps, o CoreOptions) *Core {
	e.t.Helper()
	if o.Name == "" {
		e.t.Fatal("clustertest: CoreOptions.Name is required")
	}
	site := o.Site
	if site == nil {
		site = e.Site
	}
	if o.LogLevel == "" {
		o.LogLevel = "info"
	}
	host := site.host()
	dir := e.MkDir(o.Name)
	c := &Core{Options: o, DebugAddr: e.Addr(host)}
	cfg := map[string]any{
		"data_dir":     filepath.Join(dir, "data"),
		"debug_listen": c.DebugAddr,
		"roles": map[string]any{
			"gateway": o.Gateway, "weblink": o.Gateway, "services": o.Services, "server_api": o.Gateway,
		},
	}
	if d.NATS != nil {
		cfg["bus"] = map[string]any{
			"mode": "external", "urls": d.NATS.URLs(), "user": d.NATS.User,
			"password": "file:" + d.NATS.PasswordFile, "name": o.Name,
			"tls": map[string]any{"ca_file": e.CAFile, "cert_file": d.NATS.ClientCert, "key_file": d.NATS.ClientKey},
		}
	}
	if o.Gateway {
		keyFile := filepath.Join(dir, "link.key")
		if err := os.WriteFile(keyFile, []byte(link.EncodeKey(d.Key.Private)+"\n"), 0o600); err != nil {
			e.t.Fatal(err)
		}
		c.LinkAddr, c.WebLinkAddr = e.Addr(host), e.Addr(host)
		cfg["gateway"] = map[string]any{
			"id": o.Name, "listen": c.LinkAddr,
			"keys":       []any{map[string]any{"id": d.Key.ID, "private_key": "file:" + keyFile}},
			"drain_time": "1s",
		}
		cfg["weblink"] = map[string]any{"listen": c.WebLinkAddr}
		c.APIAddr = e.Addr(host)
		cfg["server_api"] = map[string]any{"listen": c.APIAddr}
	}
	if o.Services {
		if d.PG != nil {
			dsnFile := filepath.Join(dir, "postgres-dsn")
			if err := os.WriteFile(dsnFile, []byte(d.PG.DSN()+"\n"), 0o600); err != nil {
				e.t.Fatal(err)
			}
			cfg["store"] = map[string]any{"driver": "postgres", "dsn": "file:" + dsnFile}
		}
		var apps []any
		for _, a := range d.Apps {
			secretFile := filepath.Join(dir, "secret-"+a.AppKey)
			if err := os.WriteFile(secretFile, []byte(a.Secret+"\n"), 0o600); err != nil {
				e.t.Fatal(err)
			}
			devices := a.Devices
			if devices == "" {
				devices = "allow_all"
			}
			apps = append(apps, map[string]any{"appkey": a.AppKey, "secret": "file:" + secretFile, "devices": devices})
		}
		cfg["service"] = map[string]any{"id": o.Name, "apps": apps}
	}
	merge(cfg, o.Config)
	b, err := yaml.Marshal(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	c.ConfigPath = filepath.Join(dir, "core.yaml")
	if err := os.WriteFile(c.ConfigPath, b, 0o600); err != nil {
		e.t.Fatal(err)
	}
	c.Proc = e.NewProc(site, o.Name, e.Bins.Longlink, "core", "-config", c.ConfigPath,
		"-log-level", o.LogLevel, "-shutdown-timeout", "10s")
	return c
}

// merge sets src's keys in dst, recursing into maps present in both.
func merge(dst, src map[string]any) {
	for k, v := range src {
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				dm = maps.Clone(dm)
				merge(dm, sm)
				dst[k] = dm
				continue
			}
		}
		dst[k] = v
	}
}

// WaitReady waits until the process's /readyz answers 200.
func (c *Core) WaitReady(timeout time.Duration) error {
	err := poll(timeout, func() error {
		select {
		case <-c.Exited():
			return fmt.Errorf("%w: %v", errExited, c.ExitErr())
		default:
		}
		resp, err := http.Get("http://" + c.DebugAddr + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz %d", resp.StatusCode)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("clustertest: %s not ready: %w\n%s", c.Name, err, c.Tail(30))
	}
	return nil
}

// Metrics is the process's /metrics text.
func (c *Core) Metrics(ctx context.Context) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.DebugAddr+"/metrics", nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// Metric sums the samples of the metric name whose labels contain every
// label="value" pair given, from the process's /metrics.
func (c *Core) Metric(ctx context.Context, name string, labels ...string) (float64, error) {
	text, err := c.Metrics(ctx)
	if err != nil {
		return 0, err
	}
	return SumMetric(text, name, labels...), nil
}

// SumMetric sums the samples of name in a Prometheus text exposition whose
// labels contain every label="value" pair given.
func SumMetric(text, name string, labels ...string) float64 {
	var sum float64
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		if rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		ok := true
		for _, l := range labels {
			if !strings.Contains(rest, l) {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		i := strings.LastIndexByte(rest, ' ')
		v, err := strconv.ParseFloat(rest[i+1:], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}
