package core

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/longlink/longlink/core/callsvc"
	"github.com/longlink/longlink/core/gateway"
	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/internal/buswire"
	"github.com/longlink/longlink/core/link"
	"github.com/longlink/longlink/core/service"
	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/pkg/turncred"
)

// Reload gives a running node's call service a new TURN secret and its
// gateway new chatroom entry addresses, and refuses restart-only keys by
// name, changing nothing.
func TestReload(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	key, err := link.GenerateKey("k1")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Default()
	cfg.DataDir = t.TempDir()
	cfg.DebugListen = ""
	cfg.Roles = Roles{Services: true, Gateway: true, Call: true}
	cfg.Bus.Listen = ""
	cfg.Gateway.Listen = "127.0.0.1:0"
	cfg.Gateway.AnnounceInterval = config.Duration(100 * time.Millisecond)
	cfg.Gateway.Keys = []gateway.KeyConfig{{ID: key.ID, PrivateKey: config.NewSecret(link.EncodeKey(key.Private))}}
	cfg.Service.Apps = []service.AppConfig{{AppKey: "demo", Secret: config.NewSecret("reload-app-secret-0123"),
		Devices: imapi.DevicesKickSameType, Heartbeat: config.Duration(30 * time.Second)}}
	cfg.Call.Secrets = []turncred.Secret{{ID: "first", Value: config.NewSecret("first-turn-secret-0123456789")}}
	cfg.Call.Servers = []callsvc.ServerConfig{{Site: "local", URLs: []string{"turn:127.0.0.1:3478?transport=udp"}}}
	n, err := New(cfg, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = n.Shutdown(context.Background()) }()
	announced := make(chan []string, 64)
	sub, err := n.bus.Conn().Subscribe(buswire.GatewaySubject, func(m *nats.Msg) {
		var a buswire.GatewayAnnounce
		if json.Unmarshal(m.Data, &a) == nil {
			select {
			case announced <- a.Addresses:
			default:
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()

	next := cfg // as read again from the file
	next.Call.Secrets = []turncred.Secret{{ID: "second", Value: config.NewSecret("second-turn-secret-0123456789")}}
	next.Gateway.Advertise = []string{"link://gw.example:7710"}
	applied, err := n.Reload(next)
	if err != nil || strings.Join(applied, ",") != "call.secrets,gateway.advertise" {
		t.Fatalf("reload: %v %v", applied, err)
	}
	c, err := n.Call().Credentials(ctx, "demo", "alice", "127.0.0.1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	k, _ := turncred.NewKeyring([]turncred.Secret{{ID: "x", Value: config.NewSecret("second-turn-secret-0123456789")}})
	if _, _, err := k.Verify(c.Username, c.Password, time.Now()); err != nil {
		t.Fatalf("credentials not signed with the reloaded secret: %v", err)
	}
	for {
		select {
		case a := <-announced:
			if strings.Join(a, ",") != "link://gw.example:7710" {
				continue // announced before the reload
			}
		case <-ctx.Done():
			t.Fatal("the gateway never announced the reloaded address")
		}
		break
	}

	bad := next
	bad.Gateway.Listen = "127.0.0.1:1"
	bad.Store.Path = "/elsewhere.db"
	bad.Call.Secrets = cfg.Call.Secrets
	if _, err := n.Reload(bad); err == nil || !strings.Contains(err.Error(), "gateway.listen: changed") || !strings.Contains(err.Error(), "store.path: changed") {
		t.Fatalf("restart-only keys: %v", err)
	}
	if n.live.Load().Call.Secrets[0].ID != "second" {
		t.Fatal("a refused reload changed call.secrets")
	}
}
