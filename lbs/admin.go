package lbs

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/longlink/longlink/lbs/internal/engine"
	"github.com/longlink/longlink/lbs/internal/model"
	"github.com/longlink/longlink/lbs/internal/state"
	"github.com/longlink/longlink/lbs/lbsapi"
	"github.com/longlink/longlink/pkg/config"
)

type principal struct {
	who  string // operator:<id> or node:<id>
	kind string // operator or node
	node string // for node tokens bound to one entry point ("" = any)
}

func (l *LBS) authenticate(r *http.Request) (principal, bool) {
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || tok == "" {
		return principal{}, false
	}
	cfg := l.config()
	if subtle.ConstantTimeCompare([]byte(tok), []byte(cfg.AdminToken.Reveal())) == 1 {
		return principal{who: "operator:admin", kind: state.TokenOperator}, true
	}
	if rt := cfg.ReaderToken.Reveal(); rt != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(rt)) == 1 {
		return principal{who: "reader:config", kind: state.TokenReader}, true
	}
	if nt := cfg.NodeToken.Reveal(); nt != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(nt)) == 1 {
		return principal{who: "node:shared", kind: state.TokenNode}, true
	}
	if t, ok := l.fsm.Current().State.FindToken(tok); ok {
		return principal{who: t.Kind + ":" + t.ID, kind: t.Kind, node: t.Node}, true
	}
	return principal{}, false
}

// adminHandler serves the operators' API and the nodes' reports.
func (l *LBS) adminHandler() http.Handler {
	mux := http.NewServeMux()
	op := func(pattern string, h func(w http.ResponseWriter, r *http.Request, p principal)) {
		mux.HandleFunc(pattern, l.auth(h, state.TokenOperator))
	}
	read := func(pattern string, h func(w http.ResponseWriter, r *http.Request, p principal)) {
		mux.HandleFunc(pattern, l.auth(h, state.TokenOperator, state.TokenReader))
	}
	// A node's report is answered from the state (its committed health,
	// grayscale rules, uplinks, TURN secrets, per-node tokens): a member
	// that has not caught up sends the node to another member instead.
	node := func(pattern string, h func(w http.ResponseWriter, r *http.Request, p principal)) {
		mux.Handle(pattern, l.whenCaughtUp(l.auth(h, state.TokenNode, state.TokenOperator), l.m.adminNotReady))
	}
	// The console: static files without data (every call it makes carries
	// the operator's or reader's token).
	mux.Handle("GET /console/", consoleHandler())
	mux.Handle("GET /{$}", http.RedirectHandler("/console/", http.StatusFound))
	read("GET /v1/whoami", l.adminWhoami)
	read("GET /v1/cluster", l.adminCluster)
	read("GET /v1/policy", l.adminPolicyGet)
	read("POST /v1/policy/validate", l.adminPolicyValidate)
	read("POST /v1/policy/diff", l.adminPolicyDiff)
	op("POST /v1/policy/apply", l.adminPolicyApply)
	read("GET /v1/policy/history", l.adminPolicyHistory)
	read("GET /v1/apps", l.adminList("apps"))
	read("GET /v1/pools", l.adminList("pools"))
	read("GET /v1/entrypoints", l.adminList("entry_points"))
	read("GET /v1/topology", l.adminList("topology"))
	read("GET /v1/explain", l.adminExplain)
	read("GET /v1/nodes", l.adminNodes)
	op("POST /v1/nodes/{id}/drain", l.adminDrain(state.OpDrain))
	op("POST /v1/nodes/{id}/undrain", l.adminDrain(state.OpUndrain))
	read("GET /v1/rotations", l.adminRotations)
	op("POST /v1/apps/{appkey}/rotate", l.adminRotate(state.OpRotate))
	op("POST /v1/apps/{appkey}/unrotate", l.adminRotate(state.OpUnrotate))
	read("GET /v1/sites", l.adminSites)
	op("POST /v1/sites/{site}/drain", l.adminSiteDrain(state.OpDrain))
	op("POST /v1/sites/{site}/undrain", l.adminSiteDrain(state.OpUndrain))
	read("GET /v1/audit", l.adminAudit)
	read("GET /v1/raft", l.adminRaftStatus)
	op("POST /v1/reload", l.adminReload)
	op("POST /v1/raft/join", l.adminRaftJoin)
	op("POST /v1/raft/remove", l.adminRaftRemove)
	op("POST /v1/raft/snapshot", l.adminRaftSnapshot)
	op("POST /v1/raft/restore", l.adminRaftRestore)
	op("POST /v1/tokens", l.adminTokenAdd)
	read("GET /v1/tokens", l.adminTokenList)
	op("DELETE /v1/tokens/{id}", l.adminTokenRemove)
	op("POST /v1/turn-secrets", l.adminTurnSecretAdd)
	op("DELETE /v1/turn-secrets/{id}", l.adminTurnSecretRemove)
	node("GET "+lbsapi.PathTurnSecrets, l.adminTurnSecrets)
	node("POST "+lbsapi.PathHeartbeat, l.nodeHeartbeat)
	node("POST "+lbsapi.PathNodeDrain, l.nodeDrain)
	return http.MaxBytesHandler(mux, l.cfg.MaxRequestBytes)
}

func (l *LBS) auth(h func(http.ResponseWriter, *http.Request, principal), kinds ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, ok := l.authenticate(r)
		allowed := false
		for _, k := range kinds {
			allowed = allowed || (ok && p.kind == k)
		}
		if !allowed {
			l.m.adminRequests.WithLabelValues("unauthorized").Inc()
			w.Header().Set("WWW-Authenticate", `Bearer realm="longlink-lbs"`)
			writeErr(w, http.StatusUnauthorized, "missing, unknown or insufficient bearer token")
			return
		}
		l.m.adminRequests.WithLabelValues("ok").Inc()
		h(w, r, p)
	}
}

// consistent serves a linearizable read when ?consistent=1.
func (l *LBS) consistent(w http.ResponseWriter, r *http.Request) (*state.Snapshot, bool) {
	if c := r.URL.Query().Get("consistent"); c == "1" || c == "true" {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		if err := l.cl.ReadIndex(ctx); err != nil {
			writeErr(w, http.StatusServiceUnavailable, "linearizable read: "+err.Error())
			return nil, false
		}
	}
	snap := l.fsm.Current()
	w.Header().Set("X-Longlink-Policy-Version", strconv.FormatUint(snap.State.Version, 10))
	w.Header().Set("X-Longlink-Raft-Index", strconv.FormatUint(snap.State.Index, 10))
	return snap, true
}

func readDoc(r *http.Request) (*model.Document, error) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	var d model.Document
	if err := config.Decode("policy", b, &d); err != nil {
		return nil, err
	}
	if _, err := engine.Compile(&d, nil, 0); err != nil {
		return nil, err
	}
	return &d, nil
}

func (l *LBS) adminPolicyGet(w http.ResponseWriter, r *http.Request, _ principal) {
	snap, ok := l.consistent(w, r)
	if !ok {
		return
	}
	doc := snap.State.Doc
	version := snap.State.Version
	if v := r.URL.Query().Get("version"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		found := false
		for _, h := range snap.State.History {
			if err == nil && h.Version == n {
				doc, version, found = h.Doc, h.Version, true
			}
		}
		if !found {
			writeErr(w, http.StatusNotFound, "no such version in history")
			return
		}
	}
	doc = redact(doc)
	if r.URL.Query().Get("format") == "json" {
		writeJSON(w, http.StatusOK, map[string]any{"version": version, "index": snap.State.Index, "doc": doc})
		return
	}
	b, _ := yaml.Marshal(&doc)
	w.Header().Set("Content-Type", "application/yaml")
	fmt.Fprintf(w, "# policy version %d (raft index %d)\n", version, snap.State.Index)
	w.Write(b)
}

// redact hides app signing secrets from reads.
func redact(d model.Document) model.Document {
	apps := make([]model.App, len(d.Apps))
	for i, a := range d.Apps {
		if a.SigningSecret != "" {
			a.SigningSecret = "(set)"
		}
		apps[i] = a
	}
	d.Apps = apps
	return d
}

func (l *LBS) adminPolicyValidate(w http.ResponseWriter, r *http.Request, _ principal) {
	d, err := readDoc(r)
	if err != nil {
		writeErr(w, http.StatusUnprocessableEntity, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"valid": true, "apps": len(d.Apps), "pools": len(d.Pools), "entry_points": len(d.EntryPoints), "rules": len(d.Rules), "grayscale": len(d.Grayscale)})
}

func (l *LBS) adminPolicyDiff(w http.ResponseWriter, r *http.Request, _ principal) {
	d, err := readDoc(r)
	if err != nil {
		writeErr(w, http.StatusUnprocessableEntity, err.Error())
		return
	}
	cur := redact(l.fsm.Current().State.Doc)
	next := redact(*d)
	a, _ := yaml.Marshal(&cur)
	b, _ := yaml.Marshal(&next)
	diff, changed := lineDiff(string(a), string(b))
	w.Header().Set("X-Longlink-Policy-Changed", strconv.FormatBool(changed))
	if r.URL.Query().Get("format") == "json" {
		writeJSON(w, http.StatusOK, map[string]any{"changed": changed, "diff": diff})
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	io.WriteString(w, diff)
}

func (l *LBS) adminPolicyApply(w http.ResponseWriter, r *http.Request, p principal) {
	d, err := readDoc(r)
	if err != nil {
		writeErr(w, http.StatusUnprocessableEntity, err.Error())
		return
	}
	// keep secrets the operator did not resend (reads show them as "(set)")
	cur := l.fsm.Current().State.Doc
	for i := range d.Apps {
		if d.Apps[i].SigningSecret == "(set)" {
			d.Apps[i].SigningSecret = ""
			for _, c := range cur.Apps {
				if c.AppKey == d.Apps[i].AppKey {
					d.Apps[i].SigningSecret = c.SigningSecret
				}
			}
		}
	}
	res, err := l.propose(r.Context(), &state.Command{Op: state.OpApplyDoc, Who: p.who, Doc: d, Comment: r.URL.Query().Get("comment")})
	if err != nil {
		code := http.StatusServiceUnavailable
		if errors.Is(err, state.ErrRejected) {
			code = http.StatusConflict
		}
		writeErr(w, code, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"version": res.Version, "index": res.Index})
}

func (l *LBS) adminPolicyHistory(w http.ResponseWriter, r *http.Request, _ principal) {
	snap, ok := l.consistent(w, r)
	if !ok {
		return
	}
	type item struct {
		Version uint64    `json:"version"`
		Index   uint64    `json:"index"`
		At      time.Time `json:"at"`
		Who     string    `json:"who"`
		Comment string    `json:"comment,omitempty"`
	}
	out := []item{}
	for _, h := range snap.State.History {
		out = append(out, item{h.Version, h.Index, h.At, h.Who, h.Comment})
	}
	writeJSON(w, http.StatusOK, out)
}

func (l *LBS) adminList(what string) func(http.ResponseWriter, *http.Request, principal) {
	return func(w http.ResponseWriter, r *http.Request, _ principal) {
		snap, ok := l.consistent(w, r)
		if !ok {
			return
		}
		d := redact(snap.State.Doc)
		// empty lists are [], never null
		switch what {
		case "apps":
			writeJSON(w, http.StatusOK, append([]model.App{}, d.Apps...))
		case "pools":
			writeJSON(w, http.StatusOK, append([]model.Pool{}, d.Pools...))
		case "entry_points":
			writeJSON(w, http.StatusOK, append([]model.EntryPoint{}, d.EntryPoints...))
		default:
			writeJSON(w, http.StatusOK, append([]model.EdgeUplinks{}, d.Topology...))
		}
	}
}

// ExplainResult is what the explain call returns.
type ExplainResult struct {
	AppKey        string   `json:"appkey"`
	ClientIP      string   `json:"client_ip"`
	Location      any      `json:"location"`
	Rule          string   `json:"rule"`
	PolicyVersion uint64   `json:"policy_version"`
	Candidates    []string `json:"candidates"`
	// Sites maps each candidate to its site (the policy's entry point
	// site), so that an answer's spread over the sites shows.
	Sites map[string]string `json:"sites,omitempty"`
	Steps []engine.Step     `json:"steps"`
	// Route, with ?account=, says which service nodes serve the account's
	// requests and why (route.go).
	Route *RouteExplain `json:"route,omitempty"`
}

func (l *LBS) adminExplain(w http.ResponseWriter, r *http.Request, _ principal) {
	q := r.URL.Query()
	sq, err := sdkQueryFromValues(q)
	if err != nil {
		writeErr(w, http.StatusBadRequest, err.Error())
		return
	}
	ip := netip.Addr{}
	if s := q.Get("ip"); s != "" {
		if ip, err = netip.ParseAddr(s); err != nil {
			writeErr(w, http.StatusBadRequest, "ip: "+err.Error())
			return
		}
	}
	req := engine.Request{AppKey: sq.appkey, Env: sq.env, SDK: sq.sdk, Platform: sq.platform, Client: ip, Explain: true}
	res, snap, err := l.query(&req)
	if err != nil {
		writeErr(w, http.StatusNotFound, err.Error())
		return
	}
	out := ExplainResult{AppKey: sq.appkey, ClientIP: ip.String(), Location: req.Loc, Rule: res.Rule, PolicyVersion: snap.State.Version, Steps: res.Steps}
	out.Sites = map[string]string{}
	for _, c := range res.Candidates {
		out.Candidates = append(out.Candidates, c.EP.ID)
		if c.EP.Site != "" {
			out.Sites[c.EP.ID] = c.EP.Site
		}
	}
	if acct := q.Get("account"); acct != "" {
		if out.Route, err = l.explainRoute(snap, sq.appkey, acct, sq.sdk); err != nil {
			writeErr(w, http.StatusInternalServerError, "grayscale rules: "+err.Error())
			return
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (l *LBS) adminNodes(w http.ResponseWriter, r *http.Request, _ principal) {
	snap, ok := l.consistent(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, l.health.views(snap))
}

func (l *LBS) adminDrain(op string) func(http.ResponseWriter, *http.Request, principal) {
	return func(w http.ResponseWriter, r *http.Request, p principal) {
		id := r.PathValue("id")
		if _, ok := l.fsm.Current().Engine.EntryPoint(id); !ok {
			writeErr(w, http.StatusNotFound, "no entry point "+id)
			return
		}
		l.proposeReply(w, r, &state.Command{Op: op, ID: id, Who: p.who})
	}
}

// adminRotate moves an app to its reserve pools (entry rotation under
// attack) or back: body {"reason": "…"} (optional).
func (l *LBS) adminRotate(op string) func(http.ResponseWriter, *http.Request, principal) {
	return func(w http.ResponseWriter, r *http.Request, p principal) {
		appkey := r.PathValue("appkey")
		var body struct {
			Reason string `json:"reason"`
		}
		if r.ContentLength != 0 {
			if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
				writeErr(w, http.StatusBadRequest, "body: {\"reason\": …}: "+err.Error())
				return
			}
		}
		snap := l.fsm.Current()
		var app *model.App
		for i := range snap.State.Doc.Apps {
			if snap.State.Doc.Apps[i].AppKey == appkey {
				app = &snap.State.Doc.Apps[i]
			}
		}
		if app == nil {
			writeErr(w, http.StatusNotFound, "no app "+appkey)
			return
		}
		if op == state.OpRotate && len(app.ReservePools) == 0 {
			writeErr(w, http.StatusConflict, "app "+appkey+" has no reserve_pools in the policy")
			return
		}
		l.proposeReply(w, r, &state.Command{Op: op, ID: appkey, Who: p.who, Comment: body.Reason})
	}
}

// rotateOnAttack applies the policy's rotation rule to a heartbeat: an
// entry point reporting at least rotation.conn_rate new connections/s
// rotates every app with reserve pools whose pools list it, once (a
// proposal in flight or a rotation in place is not repeated).
func (l *LBS) rotateOnAttack(snap *state.Snapshot, hb lbsapi.Heartbeat) {
	rule := snap.State.Doc.Rotation
	if rule.ConnRate <= 0 || hb.ConnRate < rule.ConnRate {
		return
	}
	inPool := map[string]bool{}
	for _, p := range snap.State.Doc.Pools {
		if slices.Contains(p.EntryPoints, hb.Node) {
			inPool[p.Name] = true
		}
	}
	for _, a := range snap.State.Doc.Apps {
		if len(a.ReservePools) == 0 || !slices.ContainsFunc(a.Pools, func(p string) bool { return inPool[p] }) {
			continue
		}
		if _, done := snap.State.Rotated[a.AppKey]; done {
			continue
		}
		if _, busy := l.rotating.LoadOrStore(a.AppKey, true); busy {
			continue
		}
		why := fmt.Sprintf("%s reported %.0f new connections/s (rotation.conn_rate %.0f)", hb.Node, hb.ConnRate, rule.ConnRate)
		l.log.Warn("rotating an app to its reserve pools", "appkey", a.AppKey, "why", why)
		l.m.rotations.Inc()
		go func() {
			defer l.rotating.Delete(a.AppKey)
			ctx, cancel := context.WithTimeout(l.ctx, 10*time.Second)
			defer cancel()
			if _, err := l.propose(ctx, &state.Command{Op: state.OpRotate, ID: a.AppKey, Who: "rule:rotation", Comment: why}); err != nil {
				l.log.Error("rotation rule: propose", "appkey", a.AppKey, "err", err)
			}
		}()
	}
}

// adminRotations lists the rotated apps.
func (l *LBS) adminRotations(w http.ResponseWriter, r *http.Request, _ principal) {
	snap, ok := l.consistent(w, r)
	if !ok {
		return
	}
	out := snap.State.Rotated
	if out == nil {
		out = map[string]state.Rotation{}
	}
	writeJSON(w, http.StatusOK, out)
}

// adminSiteDrain drains (undrains) every entry point of a site: a site
// taken out of answers for maintenance, or brought back.
func (l *LBS) adminSiteDrain(op string) func(http.ResponseWriter, *http.Request, principal) {
	return func(w http.ResponseWriter, r *http.Request, p principal) {
		site := r.PathValue("site")
		var ids []string
		for _, e := range l.fsm.Current().State.Doc.EntryPoints {
			if e.Site == site {
				ids = append(ids, e.ID)
			}
		}
		if len(ids) == 0 {
			writeErr(w, http.StatusNotFound, "no entry point in site "+site)
			return
		}
		var last state.Result
		for _, id := range ids {
			res, err := l.propose(r.Context(), &state.Command{Op: op, ID: id, Who: p.who, Comment: "site " + site})
			if err != nil {
				writeErr(w, http.StatusServiceUnavailable, err.Error())
				return
			}
			last = res
		}
		writeJSON(w, http.StatusOK, map[string]any{"index": last.Index, "version": last.Version, "entry_points": ids})
	}
}

func (l *LBS) proposeReply(w http.ResponseWriter, r *http.Request, c *state.Command) {
	res, err := l.propose(r.Context(), c)
	if err != nil {
		code := http.StatusServiceUnavailable
		if errors.Is(err, state.ErrRejected) {
			code = http.StatusConflict
		}
		writeErr(w, code, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"index": res.Index, "version": res.Version})
}

func (l *LBS) adminAudit(w http.ResponseWriter, r *http.Request, _ principal) {
	snap, ok := l.consistent(w, r)
	if !ok {
		return
	}
	a := snap.State.Audit
	if a == nil {
		a = []state.AuditEntry{}
	}
	writeJSON(w, http.StatusOK, a)
}

func (l *LBS) adminRaftStatus(w http.ResponseWriter, r *http.Request, _ principal) {
	writeJSON(w, http.StatusOK, l.cl.Status())
}

type memberReq struct {
	ID      string `json:"id"`
	Address string `json:"address"`
}

func (l *LBS) adminRaftJoin(w http.ResponseWriter, r *http.Request, p principal) {
	var m memberReq
	if err := json.NewDecoder(r.Body).Decode(&m); err != nil || m.ID == "" || m.Address == "" {
		writeErr(w, http.StatusBadRequest, "body: {\"id\":…, \"address\":…} required")
		return
	}
	if err := l.cl.Join(r.Context(), m.ID, m.Address); err != nil {
		writeErr(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	l.log.Info("raft member added", "id", m.ID, "address", m.Address, "by", p.who)
	writeJSON(w, http.StatusOK, l.cl.Status())
}

func (l *LBS) adminRaftRemove(w http.ResponseWriter, r *http.Request, p principal) {
	var m memberReq
	if err := json.NewDecoder(r.Body).Decode(&m); err != nil || m.ID == "" {
		writeErr(w, http.StatusBadRequest, "body: {\"id\":…} required")
		return
	}
	if err := l.cl.Remove(r.Context(), m.ID); err != nil {
		writeErr(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	l.log.Info("raft member removed", "id", m.ID, "by", p.who)
	writeJSON(w, http.StatusOK, l.cl.Status())
}

// adminRaftSnapshot compacts raft's log and returns the state as JSON, a
// backup that restore accepts.
func (l *LBS) adminRaftSnapshot(w http.ResponseWriter, r *http.Request, _ principal) {
	snap, ok := l.consistent(w, r)
	if !ok {
		return
	}
	if err := l.cl.TakeSnapshot(); err != nil {
		writeErr(w, http.StatusInternalServerError, "raft snapshot: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, snap.State)
}

func (l *LBS) adminRaftRestore(w http.ResponseWriter, r *http.Request, p principal) {
	var st state.State
	if err := json.NewDecoder(r.Body).Decode(&st); err != nil {
		writeErr(w, http.StatusBadRequest, "body: a state from snapshot: "+err.Error())
		return
	}
	l.proposeReply(w, r, &state.Command{Op: state.OpRestore, Who: p.who, State: &st})
}

func randomToken() string {
	b := make([]byte, 24)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (l *LBS) adminTokenAdd(w http.ResponseWriter, r *http.Request, p principal) {
	var req struct {
		ID   string `json:"id"`
		Kind string `json:"kind"`
		Node string `json:"node"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.ID == "" {
		writeErr(w, http.StatusBadRequest, "body: {\"id\", \"kind\": operator|node, \"node\"} required")
		return
	}
	secret := randomToken()
	res, err := l.propose(r.Context(), &state.Command{Op: state.OpTokenAdd, Who: p.who,
		Token: &state.Token{ID: req.ID, Kind: req.Kind, Node: req.Node, Hash: state.HashToken(secret), Created: time.Now().UTC()}})
	if err != nil {
		writeErr(w, http.StatusConflict, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": req.ID, "token": secret, "index": res.Index})
}

func (l *LBS) adminTokenList(w http.ResponseWriter, r *http.Request, _ principal) {
	snap, ok := l.consistent(w, r)
	if !ok {
		return
	}
	type item struct {
		state.Token
		Source string `json:"source"` // "config" (the LBS's config file) or "state" (ctl token add)
	}
	out := []item{}
	cfg := l.config()
	for _, t := range []struct {
		id, kind string
		s        config.Secret
	}{{"admin", state.TokenOperator, cfg.AdminToken}, {"reader", state.TokenReader, cfg.ReaderToken}, {"shared", state.TokenNode, cfg.NodeToken}} {
		if t.s.Reveal() != "" {
			out = append(out, item{Token: state.Token{ID: t.id, Kind: t.kind}, Source: "config"})
		}
	}
	ids := slices.Sorted(maps.Keys(snap.State.Tokens))
	for _, id := range ids {
		t := snap.State.Tokens[id]
		t.Hash = ""
		out = append(out, item{Token: t, Source: "state"})
	}
	writeJSON(w, http.StatusOK, out)
}

func (l *LBS) adminTokenRemove(w http.ResponseWriter, r *http.Request, p principal) {
	l.proposeReply(w, r, &state.Command{Op: state.OpTokenRemove, ID: r.PathValue("id"), Who: p.who})
}

func (l *LBS) adminTurnSecretAdd(w http.ResponseWriter, r *http.Request, p principal) {
	var req lbsapi.TurnSecret
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.ID == "" {
		writeErr(w, http.StatusBadRequest, "body: {\"id\", \"secret\" (optional: generated)} required")
		return
	}
	if req.Secret == "" {
		req.Secret = randomToken()
	}
	l.proposeReply(w, r, &state.Command{Op: state.OpTurnSecretAdd, Who: p.who, Secret: &state.TurnSecret{ID: req.ID, Secret: req.Secret, Created: time.Now().UTC()}})
}

func (l *LBS) adminTurnSecretRemove(w http.ResponseWriter, r *http.Request, p principal) {
	l.proposeReply(w, r, &state.Command{Op: state.OpTurnSecretRemove, ID: r.PathValue("id"), Who: p.who})
}

func (l *LBS) adminTurnSecrets(w http.ResponseWriter, r *http.Request, _ principal) {
	out := []lbsapi.TurnSecret{}
	for _, s := range l.fsm.Current().State.TurnSecrets {
		out = append(out, lbsapi.TurnSecret{ID: s.ID, Secret: s.Secret})
	}
	writeJSON(w, http.StatusOK, out)
}

func (l *LBS) nodeReport(w http.ResponseWriter, r *http.Request, p principal) (lbsapi.Heartbeat, bool) {
	var hb lbsapi.Heartbeat
	if err := json.NewDecoder(r.Body).Decode(&hb); err != nil || hb.Node == "" {
		writeErr(w, http.StatusBadRequest, "body: a heartbeat with node set")
		return hb, false
	}
	if p.node != "" && p.node != hb.Node {
		writeErr(w, http.StatusForbidden, "token is bound to node "+p.node)
		return hb, false
	}
	if _, ok := l.fsm.Current().Engine.EntryPoint(hb.Node); !ok {
		writeErr(w, http.StatusNotFound, "no entry point "+hb.Node+" in the policy")
		return hb, false
	}
	return hb, true
}

func (l *LBS) nodeHeartbeat(w http.ResponseWriter, r *http.Request, p principal) {
	hb, ok := l.nodeReport(w, r, p)
	if !ok {
		return
	}
	st := l.health.beat(hb)
	snap := l.fsm.Current()
	l.rotateOnAttack(snap, hb)
	who, drained := snap.State.Drained[hb.Node]
	writeJSON(w, http.StatusOK, lbsapi.HeartbeatReply{IntervalMs: l.cfg.Health.Interval.D().Milliseconds(), State: st, LBSNode: l.cfg.NodeID,
		Drained: drained && !strings.HasPrefix(who, "node:"), Uplinks: uplinks(&snap.State.Doc, hb.Node), Grayscale: grayscaleReply(snap)})
}

// uplinks resolves node's topology entry to tunnel addresses (nil when the
// policy has none for it). Validation guarantees every id names an entry
// point of the right kind with a tunnel.
func uplinks(d *model.Document, node string) *lbsapi.Uplinks {
	for _, t := range d.Topology {
		if t.Edge != node {
			continue
		}
		tunnel := func(id string) (lbsapi.Tunnel, bool) {
			for _, e := range d.EntryPoints {
				if e.ID == id && e.Tunnel != nil {
					return lbsapi.Tunnel{ID: id, Site: e.Site, QUIC: e.Tunnel.QUIC, KCP: e.Tunnel.KCP}, true
				}
			}
			return lbsapi.Tunnel{}, false
		}
		u := &lbsapi.Uplinks{}
		for _, id := range t.Relays {
			if tn, ok := tunnel(id); ok {
				u.Relays = append(u.Relays, tn)
			}
		}
		for _, id := range t.Cores {
			if tn, ok := tunnel(id); ok {
				u.Cores = append(u.Cores, tn)
			}
		}
		return u
	}
	return nil
}

// nodeDrain is a node draining itself on shutdown; it waits for the commit
// so that the node knows new clients are being sent elsewhere.
func (l *LBS) nodeDrain(w http.ResponseWriter, r *http.Request, p principal) {
	hb, ok := l.nodeReport(w, r, p)
	if !ok {
		return
	}
	if _, err := l.propose(r.Context(), &state.Command{Op: state.OpDrain, ID: hb.Node, Who: "node:" + hb.Node}); err != nil {
		writeErr(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, lbsapi.HeartbeatReply{IntervalMs: l.cfg.Health.Interval.D().Milliseconds(), State: model.HealthDraining, LBSNode: l.cfg.NodeID})
}

// lineDiff is a small LCS line diff ("-" removed, "+" added, " " same),
// enough for policy documents; changed reports whether they differ.
func lineDiff(a, b string) (diff string, changed bool) {
	x, y := strings.Split(a, "\n"), strings.Split(b, "\n")
	if len(x)*len(y) > 4_000_000 {
		return "documents too large to diff line by line\n", a != b
	}
	dp := make([][]int, len(x)+1)
	for i := range dp {
		dp[i] = make([]int, len(y)+1)
	}
	for i := len(x) - 1; i >= 0; i-- {
		for j := len(y) - 1; j >= 0; j-- {
			if x[i] == y[j] {
				dp[i][j] = dp[i+1][j+1] + 1
			} else {
				dp[i][j] = max(dp[i+1][j], dp[i][j+1])
			}
		}
	}
	var sb strings.Builder
	changed = false
	i, j := 0, 0
	for i < len(x) || j < len(y) {
		switch {
		case i < len(x) && j < len(y) && x[i] == y[j]:
			sb.WriteString("  " + x[i] + "\n")
			i++
			j++
		case j < len(y) && (i == len(x) || dp[i][j+1] >= dp[i+1][j]):
			sb.WriteString("+ " + y[j] + "\n")
			j++
			changed = true
		default:
			sb.WriteString("- " + x[i] + "\n")
			i++
			changed = true
		}
	}
	if !changed {
		return "no changes\n", false
	}
	return sb.String(), true
}

// joinCluster asks the members listed in cluster.join to add this member.
func (l *LBS) joinCluster() error {
	addr := l.cfg.RaftAdvertise
	if addr == "" {
		addr = l.raftAddr()
	}
	body, _ := json.Marshal(memberReq{ID: l.cfg.NodeID, Address: addr})
	var last error
	for _, base := range l.cfg.Cluster.Join {
		err := l.adminCall(l.ctx, base, "/v1/raft/join", body)
		if err == nil {
			l.log.Info("joined the cluster", "via", base)
			return nil
		}
		last = err
	}
	return last
}
