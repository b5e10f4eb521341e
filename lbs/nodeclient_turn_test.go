package lbs

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/longlink/longlink/lbs/nodeclient"
	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/pkg/turncred"
)

// The node client keeps a node's TURN secrets in step with the LBS: the set
// arrives after the first beat, every add/remove is passed on once, an empty
// set on the LBS is not passed on, and the values never reach the log.
func TestNodeClientTurnSecrets(t *testing.T) {
	l := startSingle(t)
	admin := newAdmin(t, l, testAdminToken)
	const s1, s2, s3 = "lbs-turn-secret-one-0123456789", "lbs-turn-secret-two-0123456789", "lbs-turn-secret-three-012345678"
	if code, b := admin.do("POST", "/v1/turn-secrets", []byte(`{"id":"t1","secret":"`+s1+`"}`)); code != 200 {
		t.Fatal(code, string(b))
	}
	keyring, err := turncred.NewKeyring([]turncred.Secret{{ID: "cfg", Value: config.NewSecret("configured-secret-0123456789")}})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got [][]string
	var logs bytes.Buffer
	var logMu sync.Mutex
	log := slog.New(slog.NewTextHandler(lockedWriter{&logs, &logMu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	nc, err := nodeclient.New(nodeclient.Config{Servers: []string{"https://" + l.AdminAddr().String()},
		Node: "edge-fra", Token: config.NewSecret(testNodeToken), RootCAs: l.CAPool(), Interval: config.Duration(30 * time.Millisecond)},
		nodeclient.Deps{Logger: log, OnTurnSecrets: func(s []turncred.Secret) error {
			var ids []string
			for _, x := range s {
				ids = append(ids, x.ID)
			}
			mu.Lock()
			got = append(got, ids)
			mu.Unlock()
			return keyring.Set(s)
		}})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer nc.Shutdown(context.Background())
	waitSets := func(want ...[]string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			mu.Lock()
			ok := len(got) == len(want)
			for i := range got {
				ok = ok && i < len(want) && slices.Equal(got[i], want[i])
			}
			cur := slices.Clone(got)
			mu.Unlock()
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("sets handed over %v, want %v", cur, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	sign := func(secret string) (string, string) {
		k, _ := turncred.NewKeyring([]turncred.Secret{{ID: "x", Value: config.NewSecret(secret)}})
		c, err := k.Issue("app", "alice", time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return c.Username, c.Password
	}
	accepts := func(secret string) bool {
		u, p := sign(secret)
		_, _, err := keyring.Verify(u, p, time.Now())
		return err == nil
	}
	waitSets([]string{"t1"})
	if !accepts(s1) || accepts("configured-secret-0123456789") {
		t.Fatal("the LBS set did not replace the configured one")
	}
	// rotation: add the new one (the old stays current), then remove the old
	if code, _ := admin.do("POST", "/v1/turn-secrets", []byte(`{"id":"t2","secret":"`+s2+`"}`)); code != 200 {
		t.Fatal(code)
	}
	waitSets([]string{"t1"}, []string{"t1", "t2"})
	if !accepts(s1) || !accepts(s2) {
		t.Fatal("both secrets must be accepted during rotation")
	}
	if code, _ := admin.do("DELETE", "/v1/turn-secrets/t1", nil); code != 200 {
		t.Fatal(code)
	}
	waitSets([]string{"t1"}, []string{"t1", "t2"}, []string{"t2"})
	if accepts(s1) || !accepts(s2) {
		t.Fatal("after removal the old secret must be refused and the new one accepted")
	}
	// the LBS emptied: the node keeps t2
	if code, _ := admin.do("DELETE", "/v1/turn-secrets/t2", nil); code != 200 {
		t.Fatal(code)
	}
	time.Sleep(300 * time.Millisecond) // ~10 beats
	waitSets([]string{"t1"}, []string{"t1", "t2"}, []string{"t2"})
	if !accepts(s2) {
		t.Fatal("an empty set on the LBS wiped the working set")
	}
	if code, _ := admin.do("POST", "/v1/turn-secrets", []byte(`{"id":"t3","secret":"`+s3+`"}`)); code != 200 {
		t.Fatal(code)
	}
	waitSets([]string{"t1"}, []string{"t1", "t2"}, []string{"t2"}, []string{"t3"})
	if accepts(s2) || !accepts(s3) {
		t.Fatal("t3 did not replace t2")
	}
	if n := nc.TurnSecretUpdates(); n != 4 {
		t.Fatalf("updates %d, want 4", n)
	}
	logMu.Lock()
	out := logs.String()
	logMu.Unlock()
	for _, s := range []string{s1, s2, s3} {
		if strings.Contains(out, s) {
			t.Fatalf("secret value in the log:\n%s", out)
		}
	}
	if !strings.Contains(out, "TURN secrets updated from the LBS") || !strings.Contains(out, "no TURN secrets") {
		t.Fatalf("expected log lines missing:\n%s", out)
	}
}

type lockedWriter struct {
	b  *bytes.Buffer
	mu *sync.Mutex
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}
