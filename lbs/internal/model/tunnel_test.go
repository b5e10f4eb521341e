package model

import (
	"strings"
	"testing"

	"github.com/longlink/longlink/pkg/config"
)

const tunnelDoc = `
apps: [{appkey: demo, pools: [p]}]
pools: [{name: p, entry_points: [edge-1]}]
entry_points:
  - {id: edge-1, kind: edge, site: e1, link: "192.0.2.1:7720"}
  - {id: relay-1, kind: relay, site: r1, tunnel: {quic: "192.0.2.2:7740", kcp: "192.0.2.2:7741"}}
  - {id: core-1, kind: egress, site: c1, tunnel: {quic: "192.0.2.3:7745"}}
topology:
  - {edge: edge-1, relays: [relay-1], cores: [core-1]}
`

// Relay and egress entry points carry tunnel addresses; the topology may
// only name them as relays and cores, and pools may not hold them.
func TestTunnelValidation(t *testing.T) {
	var d Document
	if err := config.Decode("ok", []byte(tunnelDoc), &d); err != nil {
		t.Fatalf("valid document refused: %v", err)
	}
	for _, c := range []struct{ name, from, to, want string }{
		{"relay without tunnel", `tunnel: {quic: "192.0.2.2:7740", kcp: "192.0.2.2:7741"}`, `link: "192.0.2.2:1"`, "tunnel: required for kind relay"},
		{"empty tunnel", `tunnel: {quic: "192.0.2.3:7745"}`, `tunnel: {}`, "tunnel: needs quic or kcp"},
		{"bad address", `kcp: "192.0.2.2:7741"`, `kcp: "192.0.2.2"`, "tunnel.kcp"},
		{"bad port", `kcp: "192.0.2.2:7741"`, `kcp: "192.0.2.2:70000"`, "bad port"},
		{"relay in a pool", `entry_points: [edge-1]`, `entry_points: [edge-1, relay-1]`, "is a relay, not a client entry point"},
		{"unknown relay", `relays: [relay-1]`, `relays: [relay-9]`, `"relay-9" is not an entry point of kind relay`},
		{"egress as relay", `relays: [relay-1]`, `relays: [core-1]`, `"core-1" is not an entry point of kind relay`},
		{"relay as core", `cores: [core-1]`, `cores: [relay-1]`, `"relay-1" is not an entry point of kind egress`},
		{"no hops", `relays: [relay-1], cores: [core-1]`, `relays: []`, "needs relays or cores"},
		{"bad kind", `kind: relay`, `kind: proxy`, "is not edge, gateway, relay or egress"},
	} {
		doc := strings.Replace(tunnelDoc, c.from, c.to, 1)
		if doc == tunnelDoc {
			t.Fatalf("%s: replacement did not apply", c.name)
		}
		var d Document
		err := config.Decode("bad", []byte(doc), &d)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error with %q", c.name, err, c.want)
		}
	}
}
