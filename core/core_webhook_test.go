package core_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/longlink/longlink/core"
	"github.com/longlink/longlink/core/gateway"
	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/link"
	"github.com/longlink/longlink/core/sdk"
	"github.com/longlink/longlink/core/service"
	"github.com/longlink/longlink/core/webhook"
	"github.com/longlink/longlink/pkg/config"
)

// The app's own server (SCENARIOS.md §8): it receives a signed copy of every
// message and login, and its moderation hook rejects a message — the sender
// gets ErrRejected, and the recipient never sees it.
func TestWebhooksAndModeration(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const hookSecret = "app-webhook-secret-0123456789"

	var mu sync.Mutex
	var events []map[string]any
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := webhook.Verify(hookSecret, r.Header.Get(webhook.SignatureHeader), body); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			t.Errorf("event with a bad signature: %v", err)
			return
		}
		var ev map[string]any
		_ = json.Unmarshal(body, &ev)
		mu.Lock()
		events = append(events, ev)
		mu.Unlock()
	}))
	defer receiver.Close()
	moderation := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := webhook.Verify(hookSecret, r.Header.Get(webhook.SignatureHeader), body); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		if strings.Contains(string(body), "forbidden word") {
			_ = json.NewEncoder(w).Encode(webhook.Decision{Action: webhook.Deny, Reason: "blocked by policy"})
			return
		}
		_ = json.NewEncoder(w).Encode(webhook.Decision{Action: webhook.Allow})
	}))
	defer moderation.Close()

	key, err := link.GenerateKey("k1")
	if err != nil {
		t.Fatal(err)
	}
	cfg := core.Default()
	cfg.DataDir = t.TempDir()
	cfg.DebugListen = ""
	cfg.Roles = core.Roles{Services: true, Gateway: true}
	cfg.Bus.Listen = ""
	cfg.Gateway.Listen = "127.0.0.1:0"
	cfg.Gateway.Keys = []gateway.KeyConfig{{ID: key.ID, PrivateKey: config.NewSecret(link.EncodeKey(key.Private))}}
	cfg.Service.Apps = []service.AppConfig{{AppKey: "demo", Secret: config.NewSecret("app-api-secret-0123456789")}}
	cfg.Webhook.MemoryStorage = true
	cfg.Webhook.Apps = []webhook.AppConfig{{AppKey: "demo", URL: receiver.URL, Secret: config.NewSecret(hookSecret),
		ModerationURL: moderation.URL, ModerationTimeout: config.Duration(2 * time.Second)}}
	node, err := core.New(cfg, core.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if err := node.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = node.Shutdown(context.Background()) }()
	users, err := service.Seed(ctx, node.Store(), "demo", []service.SeedUser{{Account: "alice"}, {Account: "bob"}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	client := func(u service.SeedUser) *sdk.Client {
		c, err := sdk.New(sdk.Config{Addresses: []string{node.LinkAddr()}, ServerKeys: map[string][]byte{key.ID: key.Public},
			AppKey: "demo", Account: u.Account, Token: u.Token})
		if err != nil {
			t.Fatal(err)
		}
		c.Start()
		t.Cleanup(func() { _ = c.Close() })
		if err := c.WaitConnected(ctx); err != nil {
			t.Fatal(err)
		}
		return c
	}
	alice, bob := client(users[0]), client(users[1])

	if _, err := alice.SendText(ctx, imapi.ConvP2P, "bob", "hello bob"); err != nil {
		t.Fatal(err)
	}
	_, err = alice.SendText(ctx, imapi.ConvP2P, "bob", "a forbidden word")
	var ie *imapi.Error
	if !errors.As(err, &ie) || ie.Code != imapi.ErrRejected {
		t.Fatalf("moderated send: %v, want code %d", err, imapi.ErrRejected)
	}
	if _, err := alice.SendText(ctx, imapi.ConvP2P, "bob", "still friends"); err != nil {
		t.Fatal(err)
	}

	// bob sees the allowed messages only, in order.
	var got []string
	for len(got) < 2 {
		select {
		case ev := <-bob.Events():
			if ev.Message != nil {
				got = append(got, string(ev.Message.Body))
			}
		case <-ctx.Done():
			t.Fatalf("bob got %v", got)
		}
	}
	if !strings.Contains(got[0], "hello bob") || !strings.Contains(got[1], "still friends") {
		t.Fatalf("bob got %v", got)
	}

	// The app's server got both logins and a signed copy of each stored
	// message, and none of the rejected one.
	deadline := time.Now().Add(15 * time.Second)
	for {
		mu.Lock()
		kinds := map[string]int{}
		rejectedSeen := false
		for _, ev := range events {
			k, _ := ev["kind"].(string)
			kinds[k]++
			b, _ := json.Marshal(ev)
			rejectedSeen = rejectedSeen || strings.Contains(string(b), "forbidden")
		}
		mu.Unlock()
		if rejectedSeen {
			t.Fatal("the rejected message reached the data-sync webhook")
		}
		if kinds["message"] == 2 && kinds["login"] == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("webhook events by kind: %v", kinds)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
