package store_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/store"
	"github.com/longlink/longlink/core/store/storetest"
)

const crashEnv = "LONGLINK_STORE_CRASH_HELPER"

// TestCrashKeepsAckedMessages runs a writer in a child process, kills it
// with SIGKILL in the middle of traffic, and checks that every append the
// child saw acknowledged is in the database with its sequence, and that
// sequences have no gaps.
func TestCrashKeepsAckedMessages(t *testing.T) {
	if os.Getenv("LONGLINK_INTEGRATION") == "" {
		t.Skip("integration test: set LONGLINK_INTEGRATION=1")
	}
	cfg := storetest.Config(t, store.DriverSQLite)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestCrashHelper$")
	cmd.Env = append(os.Environ(), crashEnv+"="+cfg.Path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	type ack struct {
		conv, msgID string
		seq         int64
	}
	var acks []ack
	sc := bufio.NewScanner(out)
	killed := false
	timeout := time.AfterFunc(60*time.Second, func() { _ = cmd.Process.Kill() })
	defer timeout.Stop()
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 4 || f[0] != "ACK" {
			continue
		}
		seq, _ := strconv.ParseInt(f[2], 10, 64)
		acks = append(acks, ack{f[1], f[3], seq})
		if len(acks) == 3000 && !killed {
			killed = true
			_ = cmd.Process.Kill() // SIGKILL: no Close, no flush
		}
	}
	_ = cmd.Wait()
	if !killed {
		t.Fatalf("child ended after %d acks without being killed", len(acks))
	}
	st, err := store.Open(context.Background(), cfg, store.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	byConv := map[string]map[int64]string{}
	for _, c := range []string{imapi.P2PConvID("a", "b"), imapi.P2PConvID("b", "c"), imapi.P2PConvID("a", "c")} {
		ms, _, err := st.Messages(context.Background(), app, c, 0, 100000)
		if err != nil {
			t.Fatal(err)
		}
		byConv[c] = map[int64]string{}
		for i, m := range ms {
			if m.Seq != int64(i+1) {
				t.Fatalf("%s: seq %d at %d", c, m.Seq, i)
			}
			byConv[c][m.Seq] = m.MsgID
		}
	}
	for _, a := range acks {
		if byConv[a.conv][a.seq] != a.msgID {
			t.Fatalf("acked %s seq %d (%s) lost after the crash", a.conv, a.seq, a.msgID)
		}
	}
	t.Logf("%d acked appends all present after SIGKILL", len(acks))
}

// TestCrashHelper is the child of TestCrashKeepsAckedMessages.
func TestCrashHelper(t *testing.T) {
	path := os.Getenv(crashEnv)
	if path == "" {
		t.Skip("helper process only")
	}
	cfg := store.Default()
	cfg.Path = path
	st, err := store.Open(context.Background(), cfg, store.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, u := range []string{"a", "b", "c"} {
		if err := st.CreateUser(ctx, store.User{AppKey: app, Account: u}); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	w := bufio.NewWriter(os.Stdout)
	pairs := [][2]string{{"a", "b"}, {"b", "c"}, {"c", "a"}}
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				p := pairs[(g+i)%3]
				r, err := st.AppendMessage(ctx, p2p(p[0], p[1], fmt.Sprintf("g%d-%d", g, i)))
				if err != nil {
					return
				}
				mu.Lock()
				fmt.Fprintf(w, "ACK %s %d %s\n", imapi.P2PConvID(p[0], p[1]), r.Seq, r.MsgID)
				_ = w.Flush()
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}
