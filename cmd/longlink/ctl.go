package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/longlink/longlink/pkg/pki"
)

func init() {
	register(command{name: "ctl", summary: "operate the LBS: policies, explain, nodes, drain, raft", run: runCtl})
}

const ctlUsage = `usage: longlink ctl [connection flags] <command> [args]

commands:
  policy get [-version N] [-consistent]     show the routing policy (YAML)
  policy validate -f FILE                  check a policy file
  policy diff -f FILE                      compare a policy file with the live one
  policy apply -f FILE [-m COMMENT]        apply a policy file (a new version)
  policy history                           list policy versions
  apps | pools | entrypoints | topology    list parts of the live policy
  explain -appkey K [-ip IP] [-sdk V] [-env E] [-platform P] [-account A]   (-account: which service nodes serve A)
  nodes                                    entry points with health and load
  drain ID | undrain ID                    take an entry point out of (back into) answers
  audit                                    who changed what, when
  raft status | raft join -id ID -address HOST:PORT | raft remove -id ID
  raft snapshot -o FILE                    compact the log and save a backup
  raft restore -f FILE                     restore the state from a backup
  token add -id ID -kind operator|node [-node ENTRYPOINT] | token list | token remove ID
  turn-secret add -id ID [-secret S] | turn-secret remove ID

connection: -server URL, -token TOKEN, -ca FILE, or the file -ctl-config
(default $LONGLINK_CTL_CONFIG, else .longlink/lbs/ctl.yaml that longlink dev writes),
or LONGLINK_LBS_ADMIN, LONGLINK_LBS_TOKEN, LONGLINK_LBS_CA.
`

type ctlConn struct {
	Server string `yaml:"server"`
	Token  string `yaml:"token"`
	CAFile string `yaml:"ca_file"`
	hc     *http.Client
}

func runCtl(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("ctl", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(os.Stderr, ctlUsage) }
	server := fs.String("server", "", "LBS admin URL (https://127.0.0.1:7701)")
	token := fs.String("token", "", "operator bearer token")
	ca := fs.String("ca", "", "cluster CA (PEM) to verify the admin API")
	ctlConfig := fs.String("ctl-config", "", "file with server, token and ca_file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	conn, err := ctlConnect(*ctlConfig, *server, *token, *ca)
	if err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fs.Usage()
		return flag.ErrHelp
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	sub := func(name string, a []string) (*flag.FlagSet, map[string]*string, error) {
		f := flag.NewFlagSet("ctl "+name, flag.ContinueOnError)
		vals := map[string]*string{}
		for _, k := range []string{"f", "m", "o", "version", "appkey", "account", "ip", "sdk", "env", "platform", "id", "address", "kind", "node", "secret"} {
			vals[k] = f.String(k, "", k)
		}
		consistent := f.Bool("consistent", false, "linearizable read")
		err := f.Parse(a)
		if *consistent {
			s := "1"
			vals["consistent"] = &s
		}
		return f, vals, err
	}
	readFile := func(v map[string]*string) ([]byte, error) {
		if *v["f"] == "" {
			return nil, errors.New("-f FILE required")
		}
		return os.ReadFile(*v["f"])
	}
	cmd := rest[0]
	if (cmd == "policy" || cmd == "raft" || cmd == "token" || cmd == "turn-secret") && len(rest) > 1 {
		cmd += " " + rest[1]
		rest = rest[1:]
	}
	f, v, err := sub(cmd, rest[1:])
	if err != nil {
		return err
	}
	q := url.Values{}
	if c, ok := v["consistent"]; ok {
		q.Set("consistent", *c)
	}
	switch cmd {
	case "policy get":
		if *v["version"] != "" {
			q.Set("version", *v["version"])
		}
		return conn.call(ctx, "GET", "/v1/policy", q, nil, false)
	case "policy validate", "policy diff", "policy apply":
		b, err := readFile(v)
		if err != nil {
			return err
		}
		if *v["m"] != "" {
			q.Set("comment", *v["m"])
		}
		return conn.call(ctx, "POST", "/v1/"+strings.ReplaceAll(cmd, " ", "/"), q, b, cmd != "policy diff")
	case "policy history":
		return conn.call(ctx, "GET", "/v1/policy/history", q, nil, true)
	case "apps", "pools", "entrypoints", "topology", "nodes", "audit":
		return conn.call(ctx, "GET", "/v1/"+cmd, q, nil, true)
	case "explain":
		for _, k := range []string{"appkey", "ip", "sdk", "env", "platform", "account"} {
			if *v[k] != "" {
				q.Set(k, *v[k])
			}
		}
		return conn.call(ctx, "GET", "/v1/explain", q, nil, true)
	case "drain", "undrain":
		if f.NArg() != 1 {
			return errors.New(cmd + " ID")
		}
		return conn.call(ctx, "POST", "/v1/nodes/"+url.PathEscape(f.Arg(0))+"/"+cmd, nil, nil, true)
	case "raft status":
		return conn.call(ctx, "GET", "/v1/raft", nil, nil, true)
	case "raft join", "raft remove":
		b, _ := json.Marshal(map[string]string{"id": *v["id"], "address": *v["address"]})
		return conn.call(ctx, "POST", "/v1/"+strings.ReplaceAll(cmd, " ", "/"), nil, b, true)
	case "raft snapshot":
		if *v["o"] == "" {
			return errors.New("-o FILE required")
		}
		body, err := conn.do(ctx, "POST", "/v1/raft/snapshot", nil, nil)
		if err != nil {
			return err
		}
		if err := os.WriteFile(*v["o"], body, 0o600); err != nil {
			return err
		}
		fmt.Printf("snapshot saved to %s (%d bytes)\n", *v["o"], len(body))
		return nil
	case "raft restore":
		b, err := readFile(v)
		if err != nil {
			return err
		}
		return conn.call(ctx, "POST", "/v1/raft/restore", nil, b, true)
	case "token add":
		b, _ := json.Marshal(map[string]string{"id": *v["id"], "kind": *v["kind"], "node": *v["node"]})
		return conn.call(ctx, "POST", "/v1/tokens", nil, b, true)
	case "token list":
		return conn.call(ctx, "GET", "/v1/tokens", nil, nil, true)
	case "token remove", "turn-secret remove":
		if f.NArg() != 1 {
			return errors.New(cmd + " ID")
		}
		path := "/v1/tokens/"
		if strings.HasPrefix(cmd, "turn") {
			path = "/v1/turn-secrets/"
		}
		return conn.call(ctx, "DELETE", path+url.PathEscape(f.Arg(0)), nil, nil, true)
	case "turn-secret add":
		b, _ := json.Marshal(map[string]string{"id": *v["id"], "secret": *v["secret"]})
		return conn.call(ctx, "POST", "/v1/turn-secrets", nil, b, true)
	}
	fmt.Fprint(os.Stderr, ctlUsage)
	return fmt.Errorf("unknown command %q", cmd)
}

func ctlConnect(file, server, token, ca string) (*ctlConn, error) {
	c := &ctlConn{Server: os.Getenv("LONGLINK_LBS_ADMIN"), Token: os.Getenv("LONGLINK_LBS_TOKEN"), CAFile: os.Getenv("LONGLINK_LBS_CA")}
	if file == "" {
		file = os.Getenv("LONGLINK_CTL_CONFIG")
	}
	if file == "" {
		if _, err := os.Stat(".longlink/lbs/ctl.yaml"); err == nil {
			file = ".longlink/lbs/ctl.yaml"
		}
	}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		if err := yaml.Unmarshal(b, c); err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
	}
	for dst, v := range map[*string]string{&c.Server: server, &c.Token: token, &c.CAFile: ca} {
		if v != "" {
			*dst = v
		}
	}
	if c.Server == "" {
		c.Server = "https://127.0.0.1:7701"
	}
	if c.Token == "" {
		return nil, errors.New("no operator token: -token, LONGLINK_LBS_TOKEN or a -ctl-config file")
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pool, err := pki.LoadPool(c.CAFile)
		if err != nil {
			return nil, err
		}
		tc.RootCAs = pool
	}
	c.hc = &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	return c, nil
}

func (c *ctlConn) do(ctx context.Context, method, path string, q url.Values, body []byte) ([]byte, error) {
	u := strings.TrimSuffix(c.Server, "/") + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return nil, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, e.Error)
		}
		return nil, fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	return b, nil
}

// call prints the answer: JSON indented, anything else as is.
func (c *ctlConn) call(ctx context.Context, method, path string, q url.Values, body []byte, pretty bool) error {
	b, err := c.do(ctx, method, path, q, body)
	if err != nil {
		return err
	}
	if pretty {
		var v any
		if json.Unmarshal(b, &v) == nil {
			out, _ := json.MarshalIndent(v, "", "  ")
			fmt.Println(string(out))
			return nil
		}
	}
	os.Stdout.Write(b)
	return nil
}
