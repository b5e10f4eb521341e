package gateway

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/longlink/longlink/core/imapi"

	"github.com/longlink/longlink/core/internal/buswire"
	"github.com/longlink/longlink/core/route"
	"github.com/longlink/longlink/lbs/lbsapi"
	"github.com/longlink/longlink/pkg/metricstest"
)

// serveVersion answers login and send on a version's subjects of the
// default cluster, acking sends with msg_id tag, as nodes of that version
// would. It returns a stop function.
func serveVersion(t *testing.T, nc *nats.Conn, version, tag string) func() {
	t.Helper()
	var subs []*nats.Subscription
	for op, v := range map[imapi.Op]any{
		imapi.OpLogin:       imapi.LoginResp{SessionID: tag + "-session"},
		buswire.OpSendBatch: buswire.SendBatchResp{Results: []buswire.SendResult{{Ack: &imapi.SendAck{MsgID: tag, ConvID: "c", Seq: 1}}}},
	} {
		reply := mustJSON(buswire.Reply{Body: mustJSON(v)})
		sub, err := nc.QueueSubscribe(route.VersionSubject(buswire.DefaultCluster, version, op), buswire.ServiceQueue, func(m *nats.Msg) { _ = m.Respond(reply) })
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, sub)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return func() {
		for _, s := range subs {
			_ = s.Unsubscribe()
		}
		_ = nc.Flush()
	}
}

// TestGrayscaleAndDedicatedRouting: a grayscale rule moves a logged-in
// session's requests to the nodes of its version, falls back to the stable
// nodes (counted) while that version has no live node, and a rollback moves
// the session back; a dedicated cluster with no live node answers a clear
// error at once.
func TestGrayscaleAndDedicatedRouting(t *testing.T) {
	reg := prometheus.NewRegistry()
	routes, err := route.New(route.Config{DefaultCluster: buswire.DefaultCluster, Clusters: map[string]string{"acme": "acme"}}, route.Deps{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvWith(t, nil, Deps{Routes: routes})
	alice := e.login(t, "alice", "phone")
	bob := e.login(t, "bob", "phone")
	send := func(c *client) string {
		t.Helper()
		f, _ := c.response(c.request(imapi.OpSend, imapi.SendReq{ConvType: imapi.ConvP2P, To: "zed", ClientMsgID: "x", Type: "text", Body: json.RawMessage(`{}`)}))
		var ack imapi.SendAck
		if f.Code != imapi.OK || json.Unmarshal(f.Body, &ack) != nil {
			t.Fatalf("send: %d %s", f.Code, f.Body)
		}
		return ack.MsgID
	}
	stable := func(id string) bool { return strings.HasPrefix(id, "m") } // the fake stable service's ids
	if !stable(send(alice)) {
		t.Fatal("no rule: alice not on the stable nodes")
	}

	if err := routes.SetGrayscale(lbsapi.Grayscale{PolicyVersion: 2, Rules: []lbsapi.GrayscaleRule{{Name: "b", Version: "2.0", Accounts: []string{"alice"}}}}); err != nil {
		t.Fatal(err)
	}
	// No node of 2.0 yet: the stable nodes take alice's request, counted.
	if !stable(send(alice)) {
		t.Fatal("fallback did not reach the stable nodes")
	}
	if got := metricstest.Value(t, reg, "longlink_route_grayscale_fallbacks_total", "version", "2.0"); got != 1 {
		t.Fatalf("fallbacks %v", got)
	}
	stop := serveVersion(t, e.svc.nc, "2.0", "v2")
	if got := send(alice); got != "v2" {
		t.Fatalf("alice on %s, want the 2.0 nodes", got)
	}
	if !stable(send(bob)) {
		t.Fatal("bob, not chosen, left the stable nodes")
	}
	// A new login of a chosen account goes to the version too.
	c := e.dial(t)
	f, _ := c.response(c.request(imapi.OpLogin, imapi.LoginReq{AppKey: "app", Account: "alice", Token: "tok-alice", DeviceID: "d2", DeviceType: "pc"}))
	if f.Code != imapi.OK || !strings.Contains(string(f.Body), "v2-session") {
		t.Fatalf("login of a chosen account: %d %s", f.Code, f.Body)
	}
	// Rollback: one rule list without the rule.
	if err := routes.SetGrayscale(lbsapi.Grayscale{PolicyVersion: 3}); err != nil {
		t.Fatal(err)
	}
	if !stable(send(alice)) {
		t.Fatal("rollback: alice still on the 2.0 nodes")
	}
	stop()
	// Rules that do not compile are refused; the ones in force stay.
	if err := routes.SetGrayscale(lbsapi.Grayscale{Rules: []lbsapi.GrayscaleRule{{Name: "x", Version: "2.0", Percent: 150}}}); err == nil {
		t.Fatal("invalid rules accepted")
	}

	// acme is dedicated and its cluster has no live node.
	c = e.dial(t)
	f, _ = c.response(c.request(imapi.OpLogin, imapi.LoginReq{AppKey: "acme", Account: "ann", Token: "tok-ann", DeviceID: "d", DeviceType: "phone"}))
	var ie imapi.Error
	_ = json.Unmarshal(f.Body, &ie)
	if f.Code != imapi.ErrUnavailable || ie.Message != "service cluster acme has no live node" {
		t.Fatalf("dedicated without nodes: %d %s", f.Code, f.Body)
	}
	if got := metricstest.Value(t, reg, "longlink_route_no_live_node_total", "cluster", "acme"); got != 1 {
		t.Fatalf("no-live-node count %v", got)
	}
}
