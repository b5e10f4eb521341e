package clustertest_test

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/longlink/longlink/core/clustertest"
	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/sdk"
)

// TestCluster starts a whole deployment (3 NATS servers, PostgreSQL with a
// standby, 2 gateways, 2 service nodes), carries a message from a client on
// one gateway to a client on the other, controls processes by signal, and
// checks that the cleanup leaves no process behind.
func TestCluster(t *testing.T) {
	clustertest.Require(t)
	var pids []int
	t.Run("deployment", func(t *testing.T) {
		c := clustertest.StartCluster(t, clustertest.ClusterOptions{Gateways: 2, Services: 2, PG: clustertest.PGOptions{Standby: true}})
		for _, p := range c.Env.Procs() {
			pids = append(pids, p.Pid())
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		tok, err := c.Users(ctx, "alice", "bob")
		if err != nil {
			t.Fatal(err)
		}
		gws := c.Gateways()
		alice := startClient(t, c.SDKConfig("alice", tok["alice"], gws[0]))
		bob := startClient(t, c.SDKConfig("bob", tok["bob"], gws[1]))
		send := func(id string) {
			t.Helper()
			if _, err := alice.Send(ctx, imapi.SendReq{ConvType: imapi.ConvP2P, To: "bob", ClientMsgID: id, Body: []byte(`{"text":"hi"}`)}); err != nil {
				t.Fatal(err)
			}
			waitMessage(t, bob, id)
		}
		send("m1")

		// A paused service node is resumed, a killed one restarted.
		svc := c.Services()[0]
		if err := svc.Pause(); err != nil {
			t.Fatal(err)
		}
		if err := svc.Resume(); err != nil {
			t.Fatal(err)
		}
		if err := svc.Kill(); err != nil {
			t.Fatal(err)
		}
		if svc.Running() {
			t.Fatal("killed process still running")
		}
		if err := svc.Start(); err != nil {
			t.Fatal(err)
		}
		if err := svc.WaitReady(60 * time.Second); err != nil {
			t.Fatal(err)
		}
		send("m2")

		// The store is PostgreSQL, replicated to the standby.
		db, err := c.PG.Open()
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var n int
		if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM messages WHERE client_msg_id IN ('m1', 'm2')`).Scan(&n); err != nil || n != 2 {
			t.Fatalf("messages in PostgreSQL: %d, %v", n, err)
		}
		if v, err := svc.Metric(ctx, "longlink_bus_connected"); err != nil || v != 1 {
			t.Fatalf("longlink_bus_connected = %v, %v", v, err)
		}
	})
	if len(pids) < 8 {
		t.Fatalf("%d processes recorded", len(pids))
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process %d still exists after cleanup (%v)", pid, err)
		}
	}
}

func startClient(t *testing.T, cfg sdk.Config) *sdk.Client {
	t.Helper()
	cfg.BackoffMin, cfg.BackoffMax = 50*time.Millisecond, 500*time.Millisecond
	cl, err := sdk.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cl.Start()
	t.Cleanup(func() { _ = cl.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := cl.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	return cl
}

func waitMessage(t *testing.T, cl *sdk.Client, clientMsgID string) {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case ev := <-cl.Events():
			if ev.Kind == sdk.EventMessage && ev.Message.ClientMsgID == clientMsgID {
				return
			}
		case <-timeout:
			t.Fatalf("message %s not delivered", clientMsgID)
		}
	}
}
