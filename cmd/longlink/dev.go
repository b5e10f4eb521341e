package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/longlink/longlink/core"
	"github.com/longlink/longlink/core/gateway"
	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/link"
	"github.com/longlink/longlink/core/service"
	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/pkg/lifecycle"
)

func init() {
	register(command{name: "dev", summary: "run everything in one process on embedded defaults", run: runDev})
}

// devAppKey is the demo app of `longlink dev`.
const devAppKey = "demo"

// devUsers are the demo accounts created on first start.
var devUsers = []string{"alice", "bob", "carol"}

// devState is what `longlink dev` generates on first start and reuses after,
// so that tokens, keys and the data survive a restart. It holds secrets: the
// file is written with mode 0600 inside the dev directory.
type devState struct {
	LinkKeyID      string            `json:"link_key_id"`
	LinkPrivateKey string            `json:"link_private_key"`
	AppSecret      string            `json:"app_secret"`
	Tokens         map[string]string `json:"tokens"`
}

func runDev(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	var cf commonFlags
	cf.bind(fs)
	dir := fs.String("dir", ".longlink", "directory for data, generated keys and the demo client file")
	// Keep the terminal for the table of addresses; -log-level=info shows more.
	_ = fs.Set("log-level", "warn")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cf.shutdown = min(cf.shutdown, 10*time.Second)
	log, err := cf.logger("dev")
	if err != nil {
		return err
	}
	st, err := loadDevState(*dir)
	if err != nil {
		return err
	}
	kp, err := devKeyPair(st)
	if err != nil {
		return err
	}

	cfg := core.Default()
	cfg.DataDir = filepath.Join(*dir, "core")
	cfg.Gateway.Keys = []gateway.KeyConfig{{ID: kp.ID, PrivateKey: config.NewSecret(st.LinkPrivateKey)}}
	cfg.Gateway.DrainTime = config.Duration(2 * time.Second)
	cfg.Service.Apps = []service.AppConfig{{
		AppKey:    devAppKey,
		Secret:    config.NewSecret(st.AppSecret),
		Devices:   imapi.DevicesKickSameType,
		Heartbeat: config.Duration(30 * time.Second),
	}}
	if cf.config != "" {
		if err := config.Load(cf.config, &cfg); err != nil {
			return err
		}
	}
	if cf.checkConfig {
		return printConfig(&cfg)
	}

	reg := newRegistry()
	node, err := core.New(cfg, core.Deps{Logger: log, Registerer: reg, Gatherer: reg})
	if err != nil {
		return err
	}
	g := lifecycle.NewGroup(log)
	g.Add("core", node)
	g.Add("demo-users", lifecycle.Func{StartFunc: func(ctx context.Context) error {
		seed := make([]service.SeedUser, 0, len(devUsers))
		for _, u := range devUsers {
			seed = append(seed, service.SeedUser{Account: u, Name: u, Token: st.Tokens[u]})
		}
		users, err := service.Seed(ctx, node.Store(), devAppKey, seed, 365*24*time.Hour)
		if err != nil {
			return fmt.Errorf("seed demo users: %w", err)
		}
		for _, u := range users {
			st.Tokens[u.Account] = u.Token
		}
		if err := saveDevState(*dir, st); err != nil {
			return err
		}
		info := devInfo{
			AppKey: devAppKey, AppSecret: st.AppSecret, Tokens: st.Tokens,
			LinkAddr: node.LinkAddr(), ServerAPI: node.ServerAPIAddr(),
			KeyID: kp.ID, PublicKey: link.EncodeKey(kp.Public),
		}
		if err := writeClientFile(*dir, info); err != nil {
			return err
		}
		printDevTable(os.Stdout, *dir, info)
		return nil
	}})
	return serve(ctx, log, g, cf.shutdown)
}

// devInfo is what a developer needs to connect to `longlink dev`.
type devInfo struct {
	AppKey    string
	AppSecret string
	Tokens    map[string]string
	LinkAddr  string
	ServerAPI string
	KeyID     string
	PublicKey string
}

func printDevTable(w io.Writer, dir string, in devInfo) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "Longlink dev is running. Ctrl-C stops it; data stays in "+dir+".")
	fmt.Fprintln(tw, "")
	fmt.Fprintln(tw, "WHAT\tWHERE")
	fmt.Fprintf(tw, "Link (direct to core)\t%s\n", in.LinkAddr)
	fmt.Fprintf(tw, "server HTTP API\thttp://%s\n", in.ServerAPI)
	fmt.Fprintf(tw, "Link server key\tid %s, public %s\n", in.KeyID, in.PublicKey)
	fmt.Fprintf(tw, "demo appkey\t%s (secret in %s)\n", in.AppKey, filepath.Join(dir, "dev.json"))
	for _, u := range devUsers {
		fmt.Fprintf(tw, "user %s\ttoken %s\n", u, in.Tokens[u])
	}
	fmt.Fprintf(tw, "chat\tlonglink chat --user bob\n")
	_ = tw.Flush()
}

func loadDevState(dir string) (*devState, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	st := &devState{Tokens: map[string]string{}}
	b, err := os.ReadFile(filepath.Join(dir, "dev.json"))
	switch {
	case errors.Is(err, os.ErrNotExist):
		kp, err := link.GenerateKey("dev1")
		if err != nil {
			return nil, err
		}
		st.LinkKeyID, st.LinkPrivateKey = kp.ID, link.EncodeKey(kp.Private)
		st.AppSecret = randomHex(24)
		return st, saveDevState(dir, st)
	case err != nil:
		return nil, err
	}
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("%s: %w (delete the directory to start afresh)", filepath.Join(dir, "dev.json"), err)
	}
	if st.Tokens == nil {
		st.Tokens = map[string]string{}
	}
	return st, nil
}

func saveDevState(dir string, st *devState) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, "dev.json"), b, 0o600)
}

func devKeyPair(st *devState) (link.KeyPair, error) {
	priv, err := link.DecodeKey(st.LinkPrivateKey)
	if err != nil {
		return link.KeyPair{}, fmt.Errorf("dev state: link key: %w", err)
	}
	return link.KeyPairFromPrivate(st.LinkKeyID, priv)
}

func writeFileAtomic(path string, b []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// writeClientFile leaves what `longlink chat` needs next to the dev state.
func writeClientFile(dir string, in devInfo) error {
	b, err := json.MarshalIndent(in, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, "client.json"), b, 0o600)
}
