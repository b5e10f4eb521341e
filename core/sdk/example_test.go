package sdk_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/longlink/longlink/core"
	"github.com/longlink/longlink/core/gateway"
	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/link"
	"github.com/longlink/longlink/core/sdk"
	"github.com/longlink/longlink/core/service"
	"github.com/longlink/longlink/pkg/config"
)

// Example starts an IM core in-process (embedded bus, SQLite, services and
// the Link gateway on a free loopback port), then lets alice send bob a
// message through the SDK.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// The server side: what `longlink core` runs.
	dir, err := os.MkdirTemp("", "sdk-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	key, err := link.GenerateKey("example-1")
	if err != nil {
		log.Fatal(err)
	}
	cfg := core.Default()
	cfg.DataDir = dir
	cfg.DebugListen = ""
	cfg.Roles = core.Roles{Services: true, Gateway: true}
	cfg.Bus.Listen = ""
	cfg.Gateway.Listen = "127.0.0.1:0"
	cfg.Gateway.Keys = []gateway.KeyConfig{{ID: key.ID, PrivateKey: config.NewSecret(link.EncodeKey(key.Private))}}
	cfg.Service.Apps = []service.AppConfig{{AppKey: "demo", Secret: config.NewSecret("example-app-secret-0123"),
		Devices: imapi.DevicesKickSameType, Heartbeat: config.Duration(30 * time.Second)}}
	node, err := core.New(cfg, core.Deps{})
	if err != nil {
		log.Fatal(err)
	}
	if err := node.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer node.Shutdown(context.Background())
	users, err := service.Seed(ctx, node.Store(), "demo", []service.SeedUser{{Account: "alice"}, {Account: "bob"}}, time.Hour)
	if err != nil {
		log.Fatal(err)
	}

	// The client side.
	connect := func(u service.SeedUser) *sdk.Client {
		c, err := sdk.New(sdk.Config{
			Addresses:  []string{node.LinkAddr()},
			ServerKeys: map[string][]byte{key.ID: key.Public},
			AppKey:     "demo", Account: u.Account, Token: u.Token, DeviceType: "phone",
		})
		if err != nil {
			log.Fatal(err)
		}
		c.Start()
		return c
	}
	alice, bob := connect(users[0]), connect(users[1])
	defer alice.Close()
	defer bob.Close()
	if err := bob.WaitConnected(ctx); err != nil {
		log.Fatal(err)
	}

	ack, err := alice.SendText(ctx, imapi.ConvP2P, "bob", "hello bob")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("alice's message is durable with seq", ack.Seq)

	for ev := range bob.Events() {
		if ev.Kind == sdk.EventMessage {
			fmt.Printf("bob got %s from %s (seq %d)\n", ev.Message.Body, ev.Message.From, ev.Message.Seq)
			break
		}
	}
	// Output:
	// alice's message is durable with seq 1
	// bob got {"text":"hello bob"} from alice (seq 1)
}
