package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/longlink/longlink/core"
	"github.com/longlink/longlink/core/callsvc"
	"github.com/longlink/longlink/core/gateway"
	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/link"
	"github.com/longlink/longlink/core/link/linkquic"
	"github.com/longlink/longlink/core/logintoken"
	"github.com/longlink/longlink/core/push"
	"github.com/longlink/longlink/core/sdk"
	"github.com/longlink/longlink/core/service"
	"github.com/longlink/longlink/core/service/room"
	"github.com/longlink/longlink/core/weblink"
	"github.com/longlink/longlink/edge"
	"github.com/longlink/longlink/edge/turn"
	"github.com/longlink/longlink/lbs"
	"github.com/longlink/longlink/lbs/nodeclient"
	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/pkg/lifecycle"
	"github.com/longlink/longlink/pkg/pki"
	"github.com/longlink/longlink/pkg/turncred"
	"github.com/longlink/longlink/relay"
)

func init() {
	register(command{name: "dev", summary: "run everything in one process on embedded defaults", run: runDev})
}

// devAppKey is the demo app of `longlink dev`.
const devAppKey = "demo"

// devTokenTTL is how long demo tokens are valid.
const devTokenTTL = 365 * 24 * time.Hour

// devUsers are the demo accounts created on first start.
var devUsers = []string{"alice", "bob", "carol"}

// devState is what `longlink dev` generates on first start and reuses after,
// so that tokens, keys and the data survive a restart. It holds secrets: the
// file is written with mode 0600 inside the dev directory.
type devState struct {
	LinkKeyID      string `json:"link_key_id"`
	LinkPrivateKey string `json:"link_private_key"`
	AppSecret      string `json:"app_secret"`
	ClusterKey     string `json:"cluster_key"`
	TURNSecret     string `json:"turn_secret"`
	// PushSecret signs the notifications sent to -push-webhook.
	PushSecret string `json:"push_secret"`
	// ServerAPI is where the last start served the server HTTP API
	// (host:port; it moves with -port-base): `longlink api -dir` calls it.
	ServerAPI string `json:"server_api,omitempty"`
	// The login-token signing key: the core signs the demo tokens with it,
	// and the dev edge holds the public key, so it answers logins itself.
	TokenKeyID      string            `json:"token_key_id"`
	TokenPrivateKey string            `json:"token_private_key"`
	TokenPublicKey  string            `json:"token_public_key"`
	Tokens          map[string]string `json:"tokens"`
}

// devConfig is what `longlink dev -config FILE` may override: a section per
// part of the all-in-one process.
type devConfig struct {
	LBS   lbs.Config   `yaml:"lbs"`
	Core  core.Config  `yaml:"core"`
	Relay relay.Config `yaml:"relay"`
	Edge  edge.Config  `yaml:"edge"`
}

func runDev(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	var cf commonFlags
	cf.bind(fs)
	dir := fs.String("dir", ".longlink", "`directory` for data, generated keys and the demo client file")
	portBase := fs.Int("port-base", devPortBase, "first `port` of the block of 100 that dev listens in (every default 77xx port moves with it: 7720 becomes port+20); keep it for a -dir")
	pushHook := fs.String("push-webhook", "", "offline push for the demo app: POST notifications to this URL, signed with push_secret of dev.json")
	// Keep the terminal for the table of addresses (-log-level=info shows
	// more), and stop quickly: the defaults dev uses, as -h shows them.
	devDefault(fs, "log-level", "error")
	devDefault(fs, "shutdown-timeout", "10s")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := checkPortBase(*portBase); err != nil {
		return &exitError{code: 2, err: err}
	}
	log, err := cf.logger("dev")
	if err != nil {
		return err
	}
	// One dev per directory: a second one would fight over its ports and
	// its data. Checked before anything is written.
	unlock, err := lockDevDir(*dir)
	if err != nil {
		return err
	}
	defer unlock()
	st, err := loadDevState(*dir)
	if err != nil {
		return err
	}
	kp, err := devKeyPair(st)
	if err != nil {
		return err
	}

	dc, err := devDefaults(*dir, st, kp)
	if err != nil {
		return err
	}
	if err := shiftDevPorts(&dc, *portBase); err != nil {
		return &exitError{code: 2, err: err}
	}
	if *pushHook != "" {
		dc.Core.Push.Apps = append(dc.Core.Push.Apps, push.AppConfig{AppKey: devAppKey, Preview: push.PreviewFull,
			Webhook: &push.WebhookConfig{URL: *pushHook, Secret: config.NewSecret(st.PushSecret)}})
	}
	if cf.config != "" {
		if err := config.Load(cf.config, &dc); err != nil {
			return err
		}
	}
	if len(dc.Core.Gateway.Advertise) == 0 {
		// Chatroom entry points: the edge first, as the LBS answers, then
		// the gateway itself; both lead to the one gateway.
		dc.Core.Gateway.Advertise = []string{"link://" + dc.Edge.Link.Listen, "weblink://" + dc.Edge.WebLink.Listen,
			"link://" + dc.Core.Gateway.Listen, "weblink://" + dc.Core.WebLink.Listen}
	}
	if cf.checkConfig {
		return printConfig(cf, &dc)
	}
	tlsCfg, err := devTLS(*dir)
	if err != nil {
		return err
	}
	clusterKey := []byte(st.ClusterKey)

	reg := newRegistry()
	lbsNode, err := lbs.New(dc.LBS, lbs.Deps{Logger: log, Registerer: reg})
	if err != nil {
		return err
	}
	// The gateway and the edge report health and load to the LBS, and drain
	// through it on shutdown.
	report := func(id string) nodeclient.Config {
		return nodeclient.Config{Servers: []string{"https://" + dc.LBS.AdminListen}, Node: id,
			Token: dc.LBS.NodeToken, RootCAs: lbsNode.CAPool(), Version: version}
	}
	dc.Core.LBS = report("core-gw")
	edgeReport := report("edge-1")
	dc.Edge.LBS = &edgeReport
	var node *core.Node
	node, err = core.New(dc.Core, core.Deps{
		Logger: log, Registerer: reg, Gatherer: reg, Version: version,
		Egress: relay.Deps{Logger: log, Registerer: reg, TLS: tlsCfg, ClusterKey: clusterKey},
		DemoLogins: func(ctx context.Context) ([]weblink.DemoLogin, error) {
			out := make([]weblink.DemoLogin, 0, len(devUsers))
			for _, u := range devUsers {
				// The dev server plays the app's server: a fresh entry token
				// for the demo chatroom with each page load.
				rt, err := node.Service().Rooms().IssueToken(ctx, devAppKey, devRoom, u, imapi.RoleMember, time.Hour)
				if err != nil {
					return nil, err
				}
				out = append(out, weblink.DemoLogin{AppKey: devAppKey, Account: u, Token: st.Tokens[u],
					Rooms: []weblink.DemoRoom{{RoomID: devRoom, Token: rt.Token}}})
			}
			return out, nil
		},
		DemoLBS: []string{"http://" + dc.LBS.ClientListen},
	})
	if err != nil {
		return err
	}
	relayNode, err := relay.New(dc.Relay, relay.Deps{Logger: log, Registerer: reg, TLS: tlsCfg, ClusterKey: clusterKey})
	if err != nil {
		return err
	}
	// TURN over TLS with a certificate of the dev CA, not a self-signed one
	turnTLS := &tls.Config{Certificates: tlsCfg.Certificates, MinVersion: tls.VersionTLS12}
	edgeNode, err := edge.New(dc.Edge, edge.Deps{Logger: log, Registerer: reg, TLS: tlsCfg, ClusterKey: clusterKey,
		TURN: turn.Deps{Logger: log, Registerer: reg, TLSConfig: turnTLS}})
	if err != nil {
		return err
	}
	g := lifecycle.NewGroup(log)
	// Inside out: the LBS, the core, then the relay in front of it, then the
	// edge; shutdown runs the other way, so clients leave the edge first.
	g.Add("lbs", lbsNode)
	// The routing policy names the entry points before they report.
	g.Add("lbs-policy", lifecycle.Func{StartFunc: func(ctx context.Context) error {
		if err := applyDevPolicy(ctx, lbsNode, dc, kp.ID, *dir); err != nil {
			return err
		}
		// the nodes keep their TURN secrets in step with the LBS's
		return lbsNode.AddTurnSecret(ctx, "dev", st.TURNSecret, "longlink-dev")
	}})
	g.Add("core", node)
	g.Add("relay", relayNode)
	g.Add("edge", edgeNode)
	g.Add("demo-users", lifecycle.Func{StartFunc: func(ctx context.Context) error {
		if err := devTokens(st, dc.Core.Service.TokenKey, time.Now()); err != nil {
			return fmt.Errorf("demo tokens: %w", err)
		}
		seed := make([]service.SeedUser, 0, len(devUsers))
		for _, u := range devUsers {
			seed = append(seed, service.SeedUser{Account: u, Name: u, Token: st.Tokens[u]})
		}
		users, err := service.Seed(ctx, node.Store(), devAppKey, seed, devTokenTTL)
		if err != nil {
			return fmt.Errorf("seed demo users: %w", err)
		}
		for _, u := range users {
			st.Tokens[u.Account] = u.Token
		}
		if err := devDemoRoom(ctx, node.Service().Rooms()); err != nil {
			return err
		}
		st.ServerAPI = node.ServerAPIAddr()
		if err := saveDevState(*dir, st); err != nil {
			return err
		}
		info := devInfo{
			AppKey: devAppKey, Tokens: st.Tokens,
			Admin: addrString(lbsNode.AdminAddr()), DNS: addrString(lbsNode.DNSAddr()), Debug: dc.Core.DebugListen,
			NATS: dc.Core.Bus.Listen, Relay: dc.Edge.Routing.Routes[0].NextHops[0].Address, Egress: dc.Core.Egress.Listen["quic"],
			LinkAddr: node.LinkAddr(), WebLink: node.WebLinkAddr(), ServerAPI: node.ServerAPIAddr(),
			EdgeLink: addrString(edgeNode.Addr("link")), EdgeLinkQUIC: addrString(edgeNode.Addr("link-quic")), EdgeWebLink: addrString(edgeNode.Addr("weblink")),
			TURN: dc.Edge.TURN.UDP, LBS: addrString(lbsNode.ClientAddr()),
			KeyID: kp.ID, PublicKey: link.EncodeKey(kp.Public), PushWebhook: *pushHook,
		}
		if k := dc.Core.Service.TokenKey; k != nil {
			info.TokenKeyID = k.ID
		}
		if err := writeClientFile(*dir, info); err != nil {
			return err
		}
		printDevTable(os.Stdout, *dir, info)
		return nil
	}})
	return serve(ctx, log, g, cf.shutdown, nil)
}

// devRoom is the chatroom of the demo page, owned by alice.
const devRoom = "lobby"

// devDemoRoom opens the demo chatroom unless an earlier start did.
func devDemoRoom(ctx context.Context, rooms *room.Rooms) error {
	_, err := rooms.Create(ctx, devAppKey, &room.CreateReq{RoomID: devRoom, Name: "Lobby", Owner: "alice"})
	var ie *imapi.Error
	if err != nil && !(errors.As(err, &ie) && ie.Code == imapi.ErrConflict) {
		return fmt.Errorf("demo chatroom: %w", err)
	}
	return nil
}

// devInfo is what a developer needs to connect to `longlink dev`.
type devInfo struct {
	AppKey    string
	Tokens    map[string]string
	LinkAddr  string
	WebLink   string
	ServerAPI string
	EdgeLink  string
	// EdgeLinkQUIC is the edge's Link over QUIC address (UDP).
	EdgeLinkQUIC string
	EdgeWebLink  string
	TURN         []string
	LBS          string
	KeyID        string
	PublicKey    string
	PushWebhook  string
	// TokenKeyID names the key that signs the demo tokens ("": opaque).
	TokenKeyID string
	// The other listeners: LBS admin (and console), LBS DNS, metrics and
	// health, the embedded NATS, the relay and the core egress.
	Admin, DNS, Debug, NATS, Relay, Egress string
}

func hostOf(hp string) string { h, _, _ := net.SplitHostPort(hp); return h }
func portOf(hp string) string { _, p, _ := net.SplitHostPort(hp); return p }

// devDefault changes a common flag's default for dev, and what -h shows.
func devDefault(fs *flag.FlagSet, name, value string) {
	f := fs.Lookup(name)
	_ = f.Value.Set(value)
	f.DefValue = value
}

// lockDevDir takes the directory's lock (dev.lock, flock), so that a second
// `longlink dev` in the same place stops with a clear message before it
// writes anything. The lock goes with the process.
func lockDevDir(dir string) (func(), error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "dev.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b, _ := os.ReadFile(path)
		f.Close()
		pid := strings.TrimSpace(string(b))
		if pid == "" {
			pid = "?"
		}
		return nil, fmt.Errorf("another longlink dev (pid %s) is running in %s: stop it first, or give this one its own -dir", pid, dir)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() { f.Close() }, nil
}

func printDevTable(w io.Writer, dir string, in devInfo) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "Longlink dev is running. Ctrl-C stops it; data stays in "+dir+".")
	fmt.Fprintln(tw, "")
	fmt.Fprintln(tw, "WHAT\tWHERE")
	fmt.Fprintf(tw, "demo page (browser)\thttp://%s/  (through the edge; direct: http://%s/)\n", in.EdgeWebLink, in.WebLink)
	fmt.Fprintf(tw, "Link via edge\t%s\n", in.EdgeLink)
	if in.EdgeLinkQUIC != "" {
		fmt.Fprintf(tw, "Link over QUIC via edge\t%s%s  (in the LBS answer's link_quic; SDKs race it before TCP)\n", linkquic.Scheme, in.EdgeLinkQUIC)
	}
	fmt.Fprintf(tw, "Link direct to core\t%s\n", in.LinkAddr)
	fmt.Fprintf(tw, "TURN (udp, tcp)\t%s\n", strings.Join(in.TURN, ", "))
	fmt.Fprintf(tw, "server HTTP API\thttp://%s\n", in.ServerAPI)
	fmt.Fprintf(tw, "LBS (SDK answers)\thttp://%s/v1/lbs?appkey=%s\n", in.LBS, in.AppKey)
	if in.DNS != "" {
		fmt.Fprintf(tw, "LBS DNS (udp, tcp)\t%s  (dig @%s -p %s link.%s.lbs.longlink.test)\n", in.DNS, hostOf(in.DNS), portOf(in.DNS), in.AppKey)
	}
	fmt.Fprintf(tw, "LBS admin, console\thttps://%s/console/  (token: admin in %s)\n", in.Admin, filepath.Join(dir, "lbs", "tokens.json"))
	fmt.Fprintf(tw, "operators\tlonglink ctl explain --appkey %s --ip 8.8.8.8\n", in.AppKey)
	if in.Debug != "" {
		fmt.Fprintf(tw, "metrics, health\thttp://%s/metrics  /healthz  /readyz\n", in.Debug)
	}
	if in.NATS != "" {
		fmt.Fprintf(tw, "NATS (embedded)\tnats://%s\n", in.NATS)
	}
	fmt.Fprintf(tw, "relay, core egress\t%s, %s (QUIC tunnels)\n", in.Relay, in.Egress)
	fmt.Fprintf(tw, "Link server key\tid %s, public %s\n", in.KeyID, in.PublicKey)
	fmt.Fprintf(tw, "demo appkey\t%s (secret in %s)\n", in.AppKey, filepath.Join(dir, "dev.json"))
	if in.PushWebhook != "" {
		fmt.Fprintf(tw, "offline push\t%s (signed with push_secret of dev.json)\n", in.PushWebhook)
	}
	if in.TokenKeyID != "" {
		fmt.Fprintf(tw, "login tokens\tsigned with key %s: the edge answers logins itself (token_public_key in %s)\n", in.TokenKeyID, filepath.Join(dir, "dev.json"))
	}
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
		st.ClusterKey = randomHex(32)
		st.TURNSecret = randomHex(24)
		st.PushSecret = randomHex(24)
		if err := newDevTokenKey(st); err != nil {
			return nil, err
		}
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
	changed := false
	if st.PushSecret == "" { // a dev directory from before offline push
		st.PushSecret = randomHex(24)
		changed = true
	}
	if st.TokenPrivateKey == "" { // from before signed tokens
		if err := newDevTokenKey(st); err != nil {
			return nil, err
		}
		changed = true
	}
	if changed {
		return st, saveDevState(dir, st)
	}
	return st, nil
}

func newDevTokenKey(st *devState) error {
	seed, pub, err := logintoken.GenerateKey()
	if err != nil {
		return err
	}
	st.TokenKeyID, st.TokenPrivateKey, st.TokenPublicKey = "dev1", logintoken.EncodeKey(seed), logintoken.EncodeKey(pub)
	return nil
}

// devTokens gives every demo user a token signed by the core's token key
// (config may replace the dev one), keeping those that still verify for
// more than a day, so that restarts keep the tokens developers copied.
func devTokens(st *devState, key *service.TokenKeyConfig, now time.Time) error {
	if key == nil {
		return nil // opaque tokens, generated by Seed
	}
	signer, err := key.Signer()
	if err != nil {
		return err
	}
	v := logintoken.NewVerifier()
	if err := v.Add(signer.KeyID(), signer.PublicKey()); err != nil {
		return err
	}
	for _, u := range devUsers {
		if _, err := v.Verify(st.Tokens[u], now.Add(24*time.Hour)); err == nil {
			continue
		}
		if st.Tokens[u], err = signer.Issue(devAppKey, u, now.Add(devTokenTTL)); err != nil {
			return err
		}
	}
	return nil
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

// writeClientFile leaves what `longlink chat` and other local clients need
// next to the dev state: through the edge by default, the core directly on
// request.
func writeClientFile(dir string, in devInfo) error {
	f := sdk.ClientFile{
		Addresses: []string{in.EdgeLink},
		Direct:    []string{in.LinkAddr},
		WebLink:   []string{"http://" + in.EdgeWebLink, "http://" + in.WebLink},
		LBS:       "http://" + in.LBS,
		AppKey:    in.AppKey,
		Keys:      []sdk.ClientKey{{ID: in.KeyID, PublicKey: in.PublicKey}},
	}
	for _, u := range devUsers {
		f.Users = append(f.Users, sdk.ClientUser{Account: u, Token: in.Tokens[u]})
	}
	return f.Write(filepath.Join(dir, "client.json"))
}

// devDefaults wires the all-in-one topology on loopback:
//
//	client ─▶ edge (7720 Link, 7721 WebLink, 7730 TURN)
//	           └─QUIC─▶ relay (7740) ─QUIC─▶ core egress (7745) ─PROXY v2─▶ gateway 7710 / WebLink 7711
//
// with the core egress as the edge's direct path when the relay is down. The
// edge terminates Link itself (it holds the dev Link key): its frames reach
// the gateway's pre-terminated listener 7713 (plain_listen) via the egress.
func devDefaults(dir string, st *devState, kp link.KeyPair) (devConfig, error) {
	l, err := lbs.DevConfig(filepath.Join(dir, "lbs"))
	if err != nil {
		return devConfig{}, err
	}
	c := core.Default()
	c.DataDir = filepath.Join(dir, "core")
	c.Gateway.Keys = []gateway.KeyConfig{{ID: kp.ID, PrivateKey: config.NewSecret(st.LinkPrivateKey)}}
	c.Gateway.DrainTime = config.Duration(2 * time.Second)
	c.Gateway.TrustedProxies = []string{"127.0.0.0/8"}
	// The edge terminates Link with the same key (edge-terminated Link)
	// and reaches the gateway's pre-terminated listener through the egress.
	c.Gateway.PlainListen = "127.0.0.1:7713"
	c.WebLink.TrustedProxies = []string{"127.0.0.0/8"}
	c.WebLink.DrainTime = config.Duration(2 * time.Second)
	// Tokens are signed, and the edge answers logins with them itself.
	c.Service.TokenKey = &service.TokenKeyConfig{ID: st.TokenKeyID, PrivateKey: config.NewSecret(st.TokenPrivateKey)}
	c.Service.TokenTTL = config.Duration(devTokenTTL)
	c.Service.Apps = []service.AppConfig{{
		AppKey:    devAppKey,
		Secret:    config.NewSecret(st.AppSecret),
		Devices:   imapi.DevicesKickSameType,
		Heartbeat: config.Duration(30 * time.Second),
	}}
	turnSecrets := []turncred.Secret{{ID: "dev", Value: config.NewSecret(st.TURNSecret)}}
	c.Roles.Call = true
	c.Call.Secrets = turnSecrets
	c.Call.Servers = []callsvc.ServerConfig{{Site: "dev", URLs: []string{
		"turn:127.0.0.1:7730?transport=udp", "turn:127.0.0.1:7730?transport=tcp",
	}}}
	c.Roles.Egress = true
	c.Egress.Name = "core-egress"
	c.Egress.Listen = map[string]string{"quic": "127.0.0.1:7745", "kcp": "127.0.0.1:7746"}
	c.Egress.Cluster = c.Routing.DefaultCluster

	c.Egress.Services = map[string]relay.Service{
		"link":        {Kind: "link", Address: c.Gateway.Listen},
		"link-frames": {Kind: "link-frames", Address: c.Gateway.PlainListen},
		"weblink":     {Kind: "http", Address: c.WebLink.Listen},
	}

	r := relay.Default()
	r.Name = "relay-1"
	r.Listen = map[string]string{"quic": "127.0.0.1:7740", "kcp": "127.0.0.1:7741"}
	r.Routing.Routes = []relay.Route{{
		Cluster:  c.Routing.DefaultCluster,
		NextHops: []relay.Hop{{Name: "core-egress", Transport: "quic", Address: "127.0.0.1:7745"}},
	}}

	e := edge.Default()
	e.Name = "edge-1"
	e.Cluster = c.Routing.DefaultCluster
	e.DrainPeriod = config.Duration(2 * time.Second)
	// Link over QUIC beside Link over TCP: the LBS publishes both and SDKs
	// race them (QUIC first).
	e.Link.QUIC = "127.0.0.1:7724"
	e.Link.Terminate = &edge.LinkTermination{Keys: []edge.LinkKey{{ID: kp.ID, PrivateKey: config.NewSecret(st.LinkPrivateKey)}},
		TokenKeys: []edge.TokenKey{{ID: st.TokenKeyID, PublicKey: st.TokenPublicKey}}}
	e.Routing.Routes = []relay.Route{{
		Cluster:  c.Routing.DefaultCluster,
		NextHops: []relay.Hop{{Name: "relay-1", Transport: "quic", Address: "127.0.0.1:7740"}},
		Direct:   &relay.Hop{Name: "core-egress", Transport: "quic", Address: "127.0.0.1:7745"},
	}}
	e.TURN.Enabled = true
	e.TURN.UDP = []string{"127.0.0.1:7730"}
	e.TURN.TCP = []string{"127.0.0.1:7730"}
	e.TURN.TLS = []string{"127.0.0.1:7731"}
	e.TURN.Relay.IPv4 = "127.0.0.1"
	e.TURN.Secrets = turnSecrets
	// Everything in dev runs on loopback, so the demo clients' relayed
	// addresses are loopback peers; production keeps loopback denied.
	e.TURN.Peers.Allow = []string{"127.0.0.0/8"}
	// The demo page's SDK races the LBS's WebLink entry points, the edge's
	// and the core's, from a page served by either (the edge passes the
	// requests through to the core's WebLink, which checks the origin).
	for _, l := range []string{c.WebLink.Listen, e.WebLink.Listen} {
		_, port, _ := net.SplitHostPort(l)
		c.WebLink.AllowedOrigins = append(c.WebLink.AllowedOrigins, "http://"+l, "http://localhost:"+port)
	}
	return devConfig{LBS: l, Core: c, Relay: r, Edge: e}, nil
}

// devTLS issues the tunnel certificates of the dev topology from a CA kept
// in the dev directory.
func devTLS(dir string) (*tls.Config, error) {
	ca, err := pki.LoadOrCreateCA(filepath.Join(dir, "pki"), "longlink-dev")
	if err != nil {
		return nil, err
	}
	cert, err := ca.Issue("longlink-dev-node", "127.0.0.1", "::1", "localhost")
	if err != nil {
		return nil, err
	}
	return pki.MutualTLS(cert, ca.Pool()), nil
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// applyDevPolicy routes the demo app to the dev edge first and the core
// gateway as its fallback on the first start, and leaves a `longlink ctl`
// config for operators. Later starts keep the policy the LBS has: the
// demo's, or what an operator applied since.
func applyDevPolicy(ctx context.Context, l *lbs.LBS, dc devConfig, keyID, dir string) error {
	if err := l.WaitReady(ctx); err != nil {
		return fmt.Errorf("lbs: not serving: %w", err)
	}
	if err := l.WriteCtlConfig(filepath.Join(dir, "lbs", "ctl.yaml")); err != nil {
		return err
	}
	if v, err := l.PolicyVersion(ctx); err != nil {
		return fmt.Errorf("lbs: %w", err)
	} else if v > 0 {
		return nil
	}
	doc, err := lbs.DevPolicy(devAppKey,
		lbs.DevEntryPoint{ID: "edge-1", Kind: "edge", Link: dc.Edge.Link.Listen, LinkQUIC: dc.Edge.Link.QUIC,
			WebLink: "http://" + dc.Edge.WebLink.Listen, TURN: firstOr(dc.Edge.TURN.UDP), KeyIDs: []string{keyID}},
		lbs.DevEntryPoint{ID: "core-gw", Kind: "gateway", Link: dc.Core.Gateway.Listen,
			WebLink: "http://" + dc.Core.WebLink.Listen, KeyIDs: []string{keyID}},
	)
	if err != nil {
		return err
	}
	if _, err := l.ApplyPolicy(ctx, doc, "longlink-dev"); err != nil {
		return fmt.Errorf("lbs: apply dev policy: %w", err)
	}
	return nil
}

func firstOr(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}
