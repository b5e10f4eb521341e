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
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/longlink/longlink/lbs"
	"github.com/longlink/longlink/pkg/pki"
)

func init() {
	register(command{name: "ctl", summary: "operate the LBS: policies, explain, nodes, drain, raft", run: runCtl})
}

const ctlUsage = `usage: longlink ctl [connection flags] [-o table|json] <command> [args]

commands:
  policy get [-version N] [-consistent]     show the routing policy (YAML; -o json: JSON)
  policy validate -f FILE                  check a policy file (exit 1: invalid)
  policy diff -f FILE                      compare a policy file with the live one (exit 1: differs)
  policy apply -f FILE [-m COMMENT]        apply a policy file (a new version)
  policy history                           list policy versions
  apps | pools | entrypoints              list parts of the live policy
  topology                                 the LBS members and leader, each site's nodes (health, load,
                                           version, paths' RTT/loss), the service nodes gateways hear,
                                           and the policy's uplinks (-o json: the console's /v1/cluster)
  explain -appkey K [-ip IP] [-sdk V] [-env E] [-platform P] [-account A]   (-account: which service nodes serve A)
  nodes                                    entry points with health and load
  drain ID | undrain ID                    take an entry point out of (back into) answers
  sites                                    sites with their nodes' health and load
  site drain SITE | site undrain SITE      drain (undrain) every entry point of a site
  app rotate [-reason R] APPKEY | app unrotate APPKEY   answer an app from its reserve_pools (entry rotation under attack), or back
  rotations                                the apps rotated now (who, why, when)
  audit                                    who changed what, when
  raft status | raft join -id ID -address HOST:PORT | raft remove -id ID
  raft snapshot -out FILE                  compact the log and save a backup
  raft restore -f FILE                     restore the state from a backup
  token add -id ID -kind operator|reader|node [-node ENTRYPOINT] | token list | token remove ID
  turn-secret add -id ID [-secret S] | turn-secret remove ID
  reload                                   re-read the LBS's config file (as SIGHUP does)

output: tables by default; -o json (before or after the command) prints the
API's JSON for scripts.

exit codes: 0 done; 1 policy diff found differences, or policy validate found
problems; 2 bad usage; 3 the LBS refused the request (token, not found,
conflict); 4 the LBS could not be reached or could not commit.

connection: -server URL, -token TOKEN, -ca FILE, or the file -ctl-config
(default $LONGLINK_CTL_CONFIG, else .longlink/lbs/ctl.yaml that longlink dev writes),
or LONGLINK_LBS_ADMIN, LONGLINK_LBS_TOKEN, LONGLINK_LBS_CA.
`

// ctl's exit codes (ctlUsage).
const (
	ctlExitDiffers     = 1
	ctlExitUsage       = 2
	ctlExitRefused     = 3
	ctlExitUnreachable = 4
)

type ctlConn struct {
	Server string `yaml:"server"`
	Token  string `yaml:"token"`
	CAFile string `yaml:"ca_file"`
	hc     *http.Client
}

// ctlCmd is one ctl command: its flags, and what it does.
type ctlCmd struct {
	flags []string // string flags it takes
	run   func(c *ctlRun) error
}

// ctlRun is one invocation: the connection, the parsed flags and arguments,
// and the output format.
type ctlRun struct {
	ctx  context.Context
	conn *ctlConn
	v    map[string]*string
	args []string
	json bool
	q    url.Values
	out  io.Writer
}

func (r *ctlRun) file() ([]byte, error) {
	if *r.v["f"] == "" {
		return nil, usageErr("-f FILE required")
	}
	return os.ReadFile(*r.v["f"])
}

func (r *ctlRun) oneArg(cmd string) (string, error) {
	if len(r.args) != 1 {
		return "", usageErr(cmd + " ID")
	}
	return r.args[0], nil
}

// list fetches a JSON array and prints it as a table of cols (or as JSON).
func (r *ctlRun) list(path string, cols ...ctlCol) error {
	b, err := r.conn.do(r.ctx, "GET", path, r.q, nil)
	if err != nil {
		return err
	}
	if r.json {
		return printJSON(r.out, b)
	}
	var rows []map[string]any
	if err := json.Unmarshal(b, &rows); err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	printTable(r.out, rows, cols)
	return nil
}

// send posts (or deletes) and prints the answer as JSON, or done as one line.
func (r *ctlRun) send(method, path string, body []byte, done func(map[string]any) string) error {
	b, err := r.conn.do(r.ctx, method, path, r.q, body)
	if err != nil {
		return err
	}
	if r.json {
		return printJSON(r.out, b)
	}
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	fmt.Fprintln(r.out, done(m))
	return nil
}

func usageErr(msg string) error { return &exitError{code: ctlExitUsage, err: errors.New(msg)} }

func committed(what string) func(map[string]any) string {
	return func(m map[string]any) string {
		return fmt.Sprintf("%s (policy version %v, raft index %v)", what, m["version"], m["index"])
	}
}

var ctlCommands = map[string]ctlCmd{
	"policy get": {flags: []string{"version"}, run: func(r *ctlRun) error {
		if *r.v["version"] != "" {
			r.q.Set("version", *r.v["version"])
		}
		if r.json {
			r.q.Set("format", "json")
		}
		b, err := r.conn.do(r.ctx, "GET", "/v1/policy", r.q, nil)
		if err != nil {
			return err
		}
		if r.json {
			return printJSON(r.out, b)
		}
		_, err = r.out.Write(b)
		return err
	}},
	"policy validate": {flags: []string{"f"}, run: func(r *ctlRun) error {
		b, err := r.file()
		if err != nil {
			return err
		}
		ans, err := r.conn.do(r.ctx, "POST", "/v1/policy/validate", r.q, b)
		var he *httpError
		if errors.As(err, &he) && he.status == http.StatusUnprocessableEntity {
			return &exitError{code: ctlExitDiffers, err: fmt.Errorf("%s: invalid:\n%s", *r.v["f"], he.msg)}
		}
		if err != nil {
			return err
		}
		if r.json {
			return printJSON(r.out, ans)
		}
		var m map[string]any
		_ = json.Unmarshal(ans, &m)
		fmt.Fprintf(r.out, "%s: valid (%v apps, %v pools, %v entry points, %v rules, %v grayscale rules)\n", *r.v["f"], m["apps"], m["pools"], m["entry_points"], m["rules"], m["grayscale"])
		return nil
	}},
	"policy diff": {flags: []string{"f"}, run: func(r *ctlRun) error {
		b, err := r.file()
		if err != nil {
			return err
		}
		r.q.Set("format", "json")
		ans, err := r.conn.do(r.ctx, "POST", "/v1/policy/diff", r.q, b)
		if err != nil {
			return err
		}
		var d struct {
			Changed bool   `json:"changed"`
			Diff    string `json:"diff"`
		}
		if err := json.Unmarshal(ans, &d); err != nil {
			return fmt.Errorf("policy diff: %w", err)
		}
		if r.json {
			err = printJSON(r.out, ans)
		} else {
			_, err = io.WriteString(r.out, d.Diff)
		}
		if err == nil && d.Changed {
			return &exitError{code: ctlExitDiffers}
		}
		return err
	}},
	"policy apply": {flags: []string{"f", "m"}, run: func(r *ctlRun) error {
		b, err := r.file()
		if err != nil {
			return err
		}
		if *r.v["m"] != "" {
			r.q.Set("comment", *r.v["m"])
		}
		return r.send("POST", "/v1/policy/apply", b, committed("applied"))
	}},
	"policy history": {run: func(r *ctlRun) error {
		return r.list("/v1/policy/history", col("VERSION", "version"), col("AT", "at"), col("WHO", "who"), col("COMMENT", "comment"))
	}},
	"apps": {run: func(r *ctlRun) error {
		return r.list("/v1/apps", col("APPKEY", "appkey"), col("NAME", "name"), col("POOLS", "pools"), col("FALLBACK", "fallback"), col("SIGNED", "signing_secret"))
	}},
	"pools": {run: func(r *ctlRun) error {
		return r.list("/v1/pools", col("NAME", "name"), col("ENTRY POINTS", "entry_points"))
	}},
	"entrypoints": {run: func(r *ctlRun) error {
		return r.list("/v1/entrypoints", col("ID", "id"), col("KIND", "kind"), col("SITE", "site"), col("LINK", "link"),
			col("WEBLINK", "weblink"), col("TURN", "turn"), col("CAPACITY", "capacity"), col("WEIGHT", "weight"))
	}},
	"topology": {run: topologyCmd},
	"nodes": {run: func(r *ctlRun) error {
		return r.list("/v1/nodes", col("ID", "id"), col("KIND", "kind"), col("SITE", "site"), col("VERSION", "version"), col("HEALTH", "health.state"),
			col("DRAINED BY", "drained_by"), col("CONNS", "connections"), col("LOAD", "load"), col("LAST BEAT", "last_beat_ago"))
	}},
	"audit": {run: func(r *ctlRun) error {
		return r.list("/v1/audit", col("INDEX", "index"), col("AT", "at"), col("WHO", "who"), col("OP", "op"), col("WHAT", "what"))
	}},
	"explain": {flags: []string{"appkey", "ip", "sdk", "env", "platform", "account"}, run: func(r *ctlRun) error {
		for _, k := range []string{"appkey", "ip", "sdk", "env", "platform", "account"} {
			if *r.v[k] != "" {
				r.q.Set(k, *r.v[k])
			}
		}
		b, err := r.conn.do(r.ctx, "GET", "/v1/explain", r.q, nil)
		if err != nil {
			return err
		}
		if r.json {
			return printJSON(r.out, b)
		}
		var e struct {
			AppKey        string            `json:"appkey"`
			ClientIP      string            `json:"client_ip"`
			Location      json.RawMessage   `json:"location"`
			Rule          string            `json:"rule"`
			PolicyVersion uint64            `json:"policy_version"`
			Candidates    []string          `json:"candidates"`
			Sites         map[string]string `json:"sites"`
			Steps         []struct {
				Name    string   `json:"name"`
				Note    string   `json:"note"`
				Kept    []string `json:"kept"`
				Dropped []struct{ ID, Reason string }
			} `json:"steps"`
			Route *lbs.RouteExplain `json:"route"`
		}
		if err := json.Unmarshal(b, &e); err != nil {
			return fmt.Errorf("explain: %w", err)
		}
		w := tabwriter.NewWriter(r.out, 0, 4, 2, ' ', 0)
		fmt.Fprintf(w, "appkey\t%s\nclient\t%s %s\nrule\t%s\npolicy version\t%d\ncandidates\t%s\n\nSTEP\tKEPT\tNOTE\n",
			e.AppKey, e.ClientIP, e.Location, e.Rule, e.PolicyVersion, strings.Join(withSites(e.Candidates, e.Sites), ", "))
		for _, s := range e.Steps {
			note := s.Note
			for _, d := range s.Dropped {
				note = strings.TrimPrefix(note+"; dropped "+d.ID+": "+d.Reason, "; ")
			}
			fmt.Fprintf(w, "%s\t%s\t%s\n", s.Name, strings.Join(s.Kept, ","), note)
		}
		if rt := e.Route; rt != nil {
			fmt.Fprintf(w, "\nSERVICE NODES OF %s\ncluster\t%s: %s\n", rt.Account, rt.Cluster, rt.ClusterWhy)
			if g := rt.Grayscale; g != nil {
				fmt.Fprintf(w, "grayscale\trule %s, version %s: %s\n", g.Rule, g.Version, g.Why)
			}
			for _, sk := range rt.Skipped {
				fmt.Fprintf(w, "skipped\t%s\n", sk)
			}
			var nodes []string
			for _, n := range rt.Nodes {
				label := n.ID + " (" + n.Version
				if n.Canary {
					label += ", canary"
				}
				nodes = append(nodes, label+")")
			}
			fmt.Fprintf(w, "serves\t%s\nnodes\t%s\nreported by\t%s\n", rt.Serves, strings.Join(nodes, ", "), strings.Join(rt.ReportedBy, ", "))
		}
		return w.Flush()
	}},
	"sites": {run: func(r *ctlRun) error {
		return r.list("/v1/sites", col("SITE", "name"), col("NODES", "nodes"), col("UP", "up"), col("DOWN", "down"),
			col("DRAINED", "drained"), col("CONNS", "connections"), col("CAPACITY", "capacity"), col("LOAD", "load"))
	}},
	"app rotate": {flags: []string{"reason"}, run: func(r *ctlRun) error {
		appkey, err := r.oneArg("app rotate")
		if err != nil {
			return err
		}
		b, _ := json.Marshal(map[string]string{"reason": *r.v["reason"]})
		return r.send("POST", "/v1/apps/"+url.PathEscape(appkey)+"/rotate", b, committed("rotated "+appkey+" to its reserve pools"))
	}},
	"app unrotate": {run: func(r *ctlRun) error {
		appkey, err := r.oneArg("app unrotate")
		if err != nil {
			return err
		}
		return r.send("POST", "/v1/apps/"+url.PathEscape(appkey)+"/unrotate", nil, committed("moved "+appkey+" back to its pools"))
	}},
	"rotations": {run: func(r *ctlRun) error {
		b, err := r.conn.do(r.ctx, "GET", "/v1/rotations", nil, nil)
		if err != nil {
			return err
		}
		return printJSON(r.out, b)
	}},
	"site drain":   {run: siteDrainCmd("drain")},
	"site undrain": {run: siteDrainCmd("undrain")},
	"drain":        {run: drainCmd("drain")},
	"undrain":      {run: drainCmd("undrain")},
	"raft status": {run: func(r *ctlRun) error {
		b, err := r.conn.do(r.ctx, "GET", "/v1/raft", nil, nil)
		if err != nil {
			return err
		}
		if r.json {
			return printJSON(r.out, b)
		}
		var st struct {
			ID, State, LeaderID string
			Term, CommitIndex   uint64
			Servers             []map[string]any `json:"servers"`
		}
		if err := json.Unmarshal(b, &st); err != nil {
			return fmt.Errorf("raft status: %w", err)
		}
		fmt.Fprintf(r.out, "member %s: %s, leader %s, term %d, commit index %d\n\n", st.ID, st.State, st.LeaderID, st.Term, st.CommitIndex)
		printTable(r.out, st.Servers, []ctlCol{col("ID", "id"), col("ADDRESS", "address"), col("SUFFRAGE", "suffrage"), col("LEADER", "leader")})
		return nil
	}},
	"raft join":   {flags: []string{"id", "address"}, run: raftMember("join")},
	"raft remove": {flags: []string{"id"}, run: raftMember("remove")},
	"raft snapshot": {flags: []string{"out"}, run: func(r *ctlRun) error {
		if *r.v["out"] == "" {
			return usageErr("-out FILE required")
		}
		body, err := r.conn.do(r.ctx, "POST", "/v1/raft/snapshot", nil, nil)
		if err != nil {
			return err
		}
		if err := os.WriteFile(*r.v["out"], body, 0o600); err != nil {
			return err
		}
		fmt.Fprintf(r.out, "snapshot saved to %s (%d bytes)\n", *r.v["out"], len(body))
		return nil
	}},
	"raft restore": {flags: []string{"f"}, run: func(r *ctlRun) error {
		b, err := r.file()
		if err != nil {
			return err
		}
		return r.send("POST", "/v1/raft/restore", b, committed("restored"))
	}},
	"token add": {flags: []string{"id", "kind", "node"}, run: func(r *ctlRun) error {
		b, _ := json.Marshal(map[string]string{"id": *r.v["id"], "kind": *r.v["kind"], "node": *r.v["node"]})
		return r.send("POST", "/v1/tokens", b, func(m map[string]any) string {
			return fmt.Sprintf("token %v: %v\n(shown once: only its hash is kept)", m["id"], m["token"])
		})
	}},
	"token list": {run: func(r *ctlRun) error {
		return r.list("/v1/tokens", col("ID", "id"), col("KIND", "kind"), col("NODE", "node"), col("CREATED", "created"), col("FROM", "source"))
	}},
	"token remove": {run: func(r *ctlRun) error {
		id, err := r.oneArg("token remove")
		if err != nil {
			return err
		}
		return r.send("DELETE", "/v1/tokens/"+url.PathEscape(id), nil, committed("removed token "+id))
	}},
	"turn-secret add": {flags: []string{"id", "secret"}, run: func(r *ctlRun) error {
		b, _ := json.Marshal(map[string]string{"id": *r.v["id"], "secret": *r.v["secret"]})
		return r.send("POST", "/v1/turn-secrets", b, committed("added TURN secret "+*r.v["id"]))
	}},
	"turn-secret remove": {run: func(r *ctlRun) error {
		id, err := r.oneArg("turn-secret remove")
		if err != nil {
			return err
		}
		return r.send("DELETE", "/v1/turn-secrets/"+url.PathEscape(id), nil, committed("removed TURN secret "+id))
	}},
	"reload": {run: func(r *ctlRun) error {
		return r.send("POST", "/v1/reload", nil, func(m map[string]any) string {
			return fmt.Sprintf("reloaded %v: applied %v", m["file"], m["applied"])
		})
	}},
}

// topologyCmd prints what the console's map shows (GET /v1/cluster): the
// LBS members and their leader, every site's nodes with health, load,
// version and measured paths, the service nodes the gateways hear, and the
// uplinks the policy declares.
func topologyCmd(r *ctlRun) error {
	b, err := r.conn.do(r.ctx, "GET", "/v1/cluster", r.q, nil)
	if err != nil {
		return err
	}
	if r.json {
		return printJSON(r.out, b)
	}
	var v struct {
		PolicyVersion uint64 `json:"policy_version"`
		LBS           struct {
			LeaderID string           `json:"leader_id"`
			Term     uint64           `json:"term"`
			Servers  []map[string]any `json:"servers"`
		} `json:"lbs"`
		Nodes []struct {
			ID          string                 `json:"id"`
			Kind        string                 `json:"kind"`
			Site        string                 `json:"site"`
			Version     string                 `json:"version"`
			Drained     string                 `json:"drained_by"`
			Connections int                    `json:"connections"`
			Capacity    int                    `json:"capacity"`
			Health      struct{ State string } `json:"health"`
			Paths       []struct {
				To    string  `json:"to"`
				Up    bool    `json:"up"`
				RTTMs float64 `json:"rtt_ms"`
				Loss  float64 `json:"loss"`
			} `json:"paths"`
			ServiceNodes []map[string]any `json:"service_nodes"`
		} `json:"nodes"`
		Topology []map[string]any `json:"topology"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("topology: %w", err)
	}
	leader := v.LBS.LeaderID
	if leader == "" {
		leader = "none"
	}
	fmt.Fprintf(r.out, "LBS: leader %s, term %d, policy version %d\n", leader, v.LBS.Term, v.PolicyVersion)
	printTable(r.out, v.LBS.Servers, []ctlCol{col("MEMBER", "id"), col("RAFT ADDRESS", "address"), col("SUFFRAGE", "suffrage"), col("LEADER", "leader")})

	fmt.Fprintln(r.out, "\nNODES")
	tw := tabwriter.NewWriter(r.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SITE\tNODE\tKIND\tHEALTH\tVERSION\tCONNS/CAP\tPATHS")
	var svc []map[string]any
	seen := map[string]bool{}
	for _, n := range v.Nodes {
		health, kind := n.Health.State, n.Kind
		if health == "" {
			health = "unknown" // no committed report yet
		}
		if kind == "" {
			kind = "edge"
		}
		if n.Drained != "" {
			health += " (drained)"
		}
		load := strconv.Itoa(n.Connections) + "/"
		if n.Capacity > 0 {
			load += strconv.Itoa(n.Capacity)
		} else {
			load += "-"
		}
		var paths []string
		for _, p := range n.Paths {
			state := "up"
			if !p.Up {
				state = "down"
			}
			paths = append(paths, fmt.Sprintf("%s %s %.1fms %.1f%%", p.To, state, p.RTTMs, p.Loss*100))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", cell(n.Site), n.ID, kind, health, cell(n.Version), load, cell(strings.Join(paths, "; ")))
		for _, s := range n.ServiceNodes {
			if id, _ := s["id"].(string); !seen[id] {
				seen[id] = true
				s["heard_by"] = n.ID
				svc = append(svc, s)
			}
		}
	}
	tw.Flush()
	if len(v.Nodes) == 0 {
		fmt.Fprintln(r.out, "(none)")
	}
	fmt.Fprintln(r.out, "\nSERVICE NODES (as gateways hear them on the bus)")
	printTable(r.out, svc, []ctlCol{col("ID", "id"), col("CLUSTER", "cluster"), col("SITE", "site"), col("VERSION", "version"),
		col("CANARY", "canary"), col("DRAINING", "draining"), col("HEARD BY", "heard_by")})
	fmt.Fprintln(r.out, "\nUPLINKS (the policy's topology: edge → relays → cores)")
	printTable(r.out, v.Topology, []ctlCol{col("EDGE", "edge"), col("RELAYS", "relays"), col("CORES", "cores")})
	return nil
}

func drainCmd(op string) func(r *ctlRun) error {
	return func(r *ctlRun) error {
		id, err := r.oneArg(op)
		if err != nil {
			return err
		}
		return r.send("POST", "/v1/nodes/"+url.PathEscape(id)+"/"+op, nil, func(m map[string]any) string {
			return fmt.Sprintf("%sed %s (raft index %v)", op, id, m["index"])
		})
	}
}

// withSites writes each id as "id (site)" when its site is known.
func withSites(ids []string, sites map[string]string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id
		if s := sites[id]; s != "" {
			out[i] = id + " (" + s + ")"
		}
	}
	return out
}

func siteDrainCmd(op string) func(r *ctlRun) error {
	return func(r *ctlRun) error {
		site, err := r.oneArg("site " + op)
		if err != nil {
			return err
		}
		return r.send("POST", "/v1/sites/"+url.PathEscape(site)+"/"+op, nil, func(m map[string]any) string {
			return fmt.Sprintf("%sed site %s: %v (raft index %v)", op, site, m["entry_points"], m["index"])
		})
	}
}

func raftMember(op string) func(r *ctlRun) error {
	return func(r *ctlRun) error {
		b, _ := json.Marshal(map[string]string{"id": *r.v["id"], "address": *r.v["address"]})
		return r.send("POST", "/v1/raft/"+op, b, func(map[string]any) string { return op + " " + *r.v["id"] + ": done" })
	}
}

func runCtl(ctx context.Context, args []string) error { return ctl(ctx, args, os.Stdout) }

// ctl runs one ctl command, printing its answer to out.
func ctl(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("ctl", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(os.Stderr, ctlUsage) }
	server := fs.String("server", "", "LBS admin URL (https://127.0.0.1:7701)")
	token := fs.String("token", "", "operator bearer token")
	ca := fs.String("ca", "", "cluster CA (PEM) to verify the admin API")
	ctlConfig := fs.String("ctl-config", "", "file with server, token and ca_file")
	output := fs.String("o", "table", "output: table or json")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &exitError{code: ctlExitUsage, err: err}
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fs.Usage()
		return &exitError{code: ctlExitUsage}
	}
	name := rest[0]
	if _, ok := ctlCommands[name]; !ok && len(rest) > 1 {
		name += " " + rest[1]
		rest = rest[1:]
	}
	cmd, ok := ctlCommands[name]
	if !ok {
		fmt.Fprint(os.Stderr, ctlUsage)
		return usageErr(fmt.Sprintf("unknown command %q", name))
	}
	f := flag.NewFlagSet("ctl "+name, flag.ContinueOnError)
	r := &ctlRun{v: map[string]*string{}, q: url.Values{}, out: out}
	for _, k := range cmd.flags {
		r.v[k] = f.String(k, "", k)
	}
	f.StringVar(output, "o", *output, "output: table or json")
	consistent := f.Bool("consistent", false, "linearizable read")
	if err := f.Parse(rest[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &exitError{code: ctlExitUsage, err: err}
	}
	switch *output {
	case "table":
	case "json":
		r.json = true
	default:
		return usageErr(fmt.Sprintf("-o %q: table or json", *output))
	}
	if *consistent {
		r.q.Set("consistent", "1")
	}
	r.args = f.Args()
	conn, err := ctlConnect(*ctlConfig, *server, *token, *ca)
	if err != nil {
		return &exitError{code: ctlExitUsage, err: err}
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	r.ctx, r.conn = ctx, conn
	return cmd.run(r)
}

// ctlCol is a table column: its header and the JSON key (dotted for nested
// objects) of its values.
type ctlCol struct{ head, key string }

func col(head, key string) ctlCol { return ctlCol{head, key} }

// printTable prints rows as aligned columns; lists are joined with commas,
// times shortened to seconds, and missing values shown as "-".
func printTable(w io.Writer, rows []map[string]any, cols []ctlCol) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	heads := make([]string, len(cols))
	for i, c := range cols {
		heads[i] = c.head
	}
	fmt.Fprintln(tw, strings.Join(heads, "\t"))
	for _, row := range rows {
		cells := make([]string, len(cols))
		for i, c := range cols {
			var v any = row
			for _, k := range strings.Split(c.key, ".") {
				m, _ := v.(map[string]any)
				v = m[k]
			}
			cells[i] = cell(v)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	tw.Flush()
	if len(rows) == 0 {
		fmt.Fprintln(w, "(none)")
	}
}

func cell(v any) string {
	switch x := v.(type) {
	case nil:
		return "-"
	case string:
		if x == "" {
			return "-"
		}
		if t, err := time.Parse(time.RFC3339Nano, x); err == nil {
			return t.UTC().Format("2006-01-02 15:04:05Z")
		}
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		if x {
			return "yes"
		}
		return "no"
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = cell(e)
		}
		if len(parts) == 0 {
			return "-"
		}
		return strings.Join(parts, ",")
	default:
		b, _ := json.Marshal(x)
		return string(b)
	}
}

func printJSON(w io.Writer, b []byte) error {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		_, err = w.Write(b)
		return err
	}
	out, _ := json.MarshalIndent(v, "", "  ")
	_, err := fmt.Fprintln(w, string(out))
	return err
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

// httpError is an answer other than 200 from the LBS.
type httpError struct {
	method, path string
	status       int
	msg          string
}

func (e *httpError) Error() string {
	if e.msg == "" {
		return fmt.Sprintf("%s %s: %d %s", e.method, e.path, e.status, http.StatusText(e.status))
	}
	return fmt.Sprintf("%s %s: %d %s: %s", e.method, e.path, e.status, http.StatusText(e.status), e.msg)
}

// do sends one request; its errors carry ctl's exit codes: 3 for a refusal
// (4xx), 4 for an LBS that cannot be reached or cannot commit (5xx).
func (c *ctlConn) do(ctx context.Context, method, path string, q url.Values, body []byte) ([]byte, error) {
	u := strings.TrimSuffix(c.Server, "/") + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return nil, &exitError{code: ctlExitUsage, err: err}
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, &exitError{code: ctlExitUnreachable, err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, &exitError{code: ctlExitUnreachable, err: err}
	}
	if resp.StatusCode != http.StatusOK {
		he := &httpError{method: method, path: path, status: resp.StatusCode}
		var e struct{ Error string }
		if json.Unmarshal(b, &e) == nil {
			he.msg = e.Error
		}
		code := ctlExitRefused
		if resp.StatusCode >= 500 {
			code = ctlExitUnreachable
		}
		return nil, &exitError{code: code, err: he}
	}
	return b, nil
}
