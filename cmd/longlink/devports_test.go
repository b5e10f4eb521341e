package main

import (
	"fmt"
	"math/rand/v2"
	"net"
	"reflect"
	"slices"
	"strconv"
	"testing"
)

// -port-base moves every listener and every address that names one (URLs,
// origins, routes, TURN URLs) to the new block, and leaves secrets alone.
func TestDevPortBase(t *testing.T) {
	dir := t.TempDir()
	st, err := loadDevState(dir)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := devKeyPair(st)
	if err != nil {
		t.Fatal(err)
	}
	dc, err := devDefaults(dir, st, kp)
	if err != nil {
		t.Fatal(err)
	}
	admin := dc.LBS.AdminToken.Reveal()
	var before []string
	shiftValue(reflect.ValueOf(&dc).Elem(), func(s string) string {
		if devPortRe.MatchString(s) {
			before = append(before, s)
		}
		return s
	})
	if len(before) < 15 {
		t.Fatalf("only %d addresses in dev's block before the shift: %q", len(before), before)
	}
	if err := shiftDevPorts(&dc, 20000); err != nil {
		t.Fatal(err)
	}
	shiftValue(reflect.ValueOf(&dc).Elem(), func(s string) string {
		if devPortRe.MatchString(s) {
			t.Errorf("%q still in 77xx after -port-base 20000", s)
		}
		return s
	})
	for _, c := range [][2]string{
		{dc.LBS.ClientListen, "127.0.0.1:20000"}, {dc.LBS.AdminListen, "127.0.0.1:20001"}, {dc.LBS.RaftListen, "127.0.0.1:20002"},
		{dc.LBS.DNS.Listen, "127.0.0.1:20053"}, {dc.Core.Gateway.Listen, "127.0.0.1:20010"}, {dc.Core.WebLink.Listen, "127.0.0.1:20011"},
		{dc.Core.Gateway.PlainListen, "127.0.0.1:20013"}, {dc.Core.Bus.Listen, "127.0.0.1:20014"}, {dc.Core.DebugListen, "127.0.0.1:20019"},
		{dc.Core.Egress.Listen["quic"], "127.0.0.1:20045"}, {dc.Relay.Listen["quic"], "127.0.0.1:20040"}, {dc.Relay.Listen["kcp"], "127.0.0.1:20041"},
		{dc.Edge.Link.Listen, "127.0.0.1:20020"}, {dc.Edge.WebLink.Listen, "127.0.0.1:20021"}, {dc.Edge.TURN.TLS[0], "127.0.0.1:20031"},
		{dc.Edge.Routing.Routes[0].NextHops[0].Address, "127.0.0.1:20040"}, {dc.Edge.Routing.Routes[0].Direct.Address, "127.0.0.1:20045"},
		{dc.Relay.Routing.Routes[0].NextHops[0].Address, "127.0.0.1:20045"}, {dc.Core.Egress.Services["link-frames"].Address, "127.0.0.1:20013"},
		{dc.Core.Call.Servers[0].URLs[0], "turn:127.0.0.1:20030?transport=udp"},
	} {
		if got, want := c[0], c[1]; got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
	if !slices.Contains(dc.Core.WebLink.AllowedOrigins, "http://localhost:20021") {
		t.Errorf("allowed origins not moved: %q", dc.Core.WebLink.AllowedOrigins)
	}
	if dc.LBS.AdminToken.Reveal() != admin || dc.Core.Gateway.Keys[0].PrivateKey.Reveal() != st.LinkPrivateKey {
		t.Error("secrets changed")
	}
	for _, bad := range []int{0, 80, 65500} {
		if err := shiftDevPorts(&dc, bad); err == nil {
			t.Errorf("-port-base %d accepted", bad)
		}
	}
}

// freeDevPortBase picks a block of 100 ports, below the kernel's ephemeral
// range, whose every port is free on loopback for TCP and UDP now: the
// `longlink dev` of a test does not collide with another test's, nor with
// a developer's dev on 7700.
func freeDevPortBase(t *testing.T) int {
	t.Helper()
	for try := 0; try < 50; try++ {
		base := 20000 + 100*rand.IntN(120) // 20000..31900
		if devBlockFree(base) {
			return base
		}
	}
	t.Fatal("no free block of 100 ports found for longlink dev")
	return 0
}

func devBlockFree(base int) bool {
	var closers []func() error
	defer func() {
		for _, c := range closers {
			_ = c()
		}
	}()
	for p := base; p < base+100; p++ {
		addr := "127.0.0.1:" + strconv.Itoa(p)
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return false
		}
		closers = append(closers, ln.Close)
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return false
		}
		closers = append(closers, pc.Close)
	}
	return true
}

// devAddr is dev's loopback address at offset off of its block (20 → Link via the edge).
func devAddr(base, off int) string { return fmt.Sprintf("127.0.0.1:%d", base+off) }
