package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/link"
	"github.com/longlink/longlink/core/sdk"
	"github.com/longlink/longlink/core/store"
)

// The super-group figure: time from a send to the push reaching the LAST
// online member, with M members of whom N are online (held by worker
// processes), p50/p99 over many sends; the baseline in the same run is the
// same send in an ordinary (write-diffusion) group of 500 members, all
// online. The group and users are seeded into the store before the server
// starts; u0 owns both groups and sends from this process.

const (
	superBenchGroup = "sbench"
	baseBenchGroup  = "gbase"
)

func runSuperGroup(args []string) error {
	fs := flag.NewFlagSet("supergroup", flag.ContinueOnError)
	bin := fs.String("bin", "longlink", "longlink binary")
	members := fs.Int("members", 100_000, "super-group members (u0 … u<members-1>)")
	online := fs.Int("online", 5000, "online members (u1 … u<online>), held by the workers")
	workers := fs.Int("workers", 2, "worker processes (source addresses 127.0.0.<2+i>)")
	sends := fs.Int("sends", 150, "super-group sends measured")
	interval := fs.Duration("interval", 200*time.Millisecond, "time between super-group sends")
	baseMembers := fs.Int("base-members", 500, "members of the ordinary baseline group (all online)")
	baseSends := fs.Int("base-sends", 100, "baseline sends")
	baseInterval := fs.Duration("base-interval", 100*time.Millisecond, "time between baseline sends")
	serverCPU := fs.String("server-cpu", "0", "CPU list for the server (taskset); empty: not pinned")
	clientCPU := fs.String("client-cpu", "1", "CPU list for the workers (taskset); empty: not pinned")
	profile := fs.String("cpuprofile", "", "write a CPU profile of the server during the super-group sends to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *online >= *members || *baseMembers > *online+1 || *baseMembers > 500 {
		return fmt.Errorf("want online < members and base-members ≤ online+1 and ≤ 500 (service.max_group_members)")
	}
	ctx := context.Background()
	seed := func(ctx context.Context, dbPath string) error {
		st, err := openSeedStore(ctx, dbPath)
		if err != nil {
			return err
		}
		defer st.Close()
		all := make([]string, *members)
		for i := range all {
			all[i] = account(i)
		}
		for off := *online + 1; off < len(all); off += 1000 {
			var us []store.User
			for _, a := range all[off:min(off+1000, len(all))] {
				us = append(us, store.User{AppKey: benchAppKey, Account: a})
			}
			if _, err := st.CreateUsers(ctx, us); err != nil {
				return err
			}
		}
		if err := st.CreateSuperGroup(ctx, store.SuperGroup{AppKey: benchAppKey, GroupID: superBenchGroup, Name: "bench", Owner: all[0]},
			all[:1000], *members); err != nil {
			return err
		}
		for off := 1000; off < len(all); off += 1000 {
			if _, _, err := st.AddSuperMembers(ctx, benchAppKey, superBenchGroup, all[off:min(off+1000, len(all))], *members); err != nil {
				return err
			}
		}
		return st.CreateGroup(ctx, store.Group{AppKey: benchAppKey, GroupID: baseBenchGroup, Name: "base", Owner: all[0], Members: all[:*baseMembers]})
	}
	srv, err := startServer(ctx, serverOpts{bin: *bin, cpu: *serverCPU, users: *online + 1, seed: seed,
		extra: "store: {synchronous: normal}\n"})
	if err != nil {
		return err
	}
	defer srv.stop()

	per := (*online + *workers - 1) / *workers
	start := time.Now()
	ws, stopWorkers, err := startWorkers(*workers, *clientCPU, func(i int) []string {
		first := 1 + i*per
		n := min(per, *online+1-first)
		return append([]string{"supergroup-worker", "-addr", srv.linkAddr, "-first", strconv.Itoa(first), "-count", strconv.Itoa(n)},
			workerArgs(i, srv.key)...)
	})
	if err != nil {
		return err
	}
	defer stopWorkers()
	for i, w := range ws {
		if _, err := w.expect("ready"); err != nil {
			return fmt.Errorf("worker %d: %w", i, err)
		}
	}
	progress("%d members online on %d worker processes after %s", *online, *workers, time.Since(start).Round(time.Millisecond))

	sender, err := sdk.New(sdk.Config{
		Addresses:  []string{srv.linkAddr},
		ServerKeys: map[string][]byte{srv.key.ID: srv.key.Public},
		AppKey:     benchAppKey, Account: account(0), Token: token(0), DeviceType: "pc",
		EventBuffer: 4096, RequestTimeout: 30 * time.Second,
	})
	if err != nil {
		return err
	}
	sender.Start()
	defer sender.Close()
	go func() {
		for range sender.Events() {
		}
	}()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = sender.WaitConnected(wctx)
	cancel()
	if err != nil {
		return err
	}

	// phase sends n messages to conv and returns, per message, the time
	// from the send to the last expected receiver's push.
	type sent struct {
		at  int64 // unix ns before the send
		ack time.Duration
	}
	phase := func(name string, convType int, to string, n int, every time.Duration, receivers int, mention func(i int) []string) error {
		conv := imapi.GroupConvID(to)
		if convType == imapi.ConvSuper {
			conv = imapi.SuperConvID(to)
		}
		var mu sync.Mutex
		bySeq := map[int64]sent{}
		var wg sync.WaitGroup
		var failed atomic.Int64
		t := time.NewTicker(every)
		for i := range n {
			<-t.C
			wg.Add(1)
			go func() {
				defer wg.Done()
				body, _ := json.Marshal(map[string]any{"text": "bench", "i": i})
				at := time.Now()
				ack, err := sender.Send(ctx, imapi.SendReq{ConvType: convType, To: to, ClientMsgID: fmt.Sprintf("%s-%d", name, i),
					Type: "text", Body: body, Mentions: mention(i)})
				if err != nil {
					failed.Add(1)
					progress("%s send %d: %v", name, i, err)
					return
				}
				mu.Lock()
				bySeq[ack.Seq] = sent{at: at.UnixNano(), ack: time.Since(at)}
				mu.Unlock()
			}()
		}
		t.Stop()
		wg.Wait()
		time.Sleep(3 * time.Second) // the last pushes arrive
		type rx struct {
			count int
			last  int64
		}
		got := map[int64]*rx{}
		for i, w := range ws {
			if err := w.send("report " + conv); err != nil {
				return err
			}
			for {
				if !w.out.Scan() {
					return fmt.Errorf("worker %d ended", i)
				}
				f := strings.Fields(w.out.Text())
				if len(f) == 1 && f[0] == "end" {
					break
				}
				if len(f) != 4 || f[0] != "rx" {
					return fmt.Errorf("worker %d: %q", i, w.out.Text())
				}
				seq, _ := strconv.ParseInt(f[1], 10, 64)
				cnt, _ := strconv.Atoi(f[2])
				last, _ := strconv.ParseInt(f[3], 10, 64)
				r := got[seq]
				if r == nil {
					r = &rx{}
					got[seq] = r
				}
				r.count += cnt
				r.last = max(r.last, last)
			}
		}
		var lats, acks []time.Duration
		incomplete := 0
		for seq, s := range bySeq {
			r := got[seq]
			if r == nil || r.count < receivers {
				incomplete++
				continue
			}
			lats = append(lats, time.Duration(r.last-s.at))
			acks = append(acks, s.ack)
		}
		if len(lats) == 0 {
			return fmt.Errorf("%s: no send reached all %d online receivers", name, receivers)
		}
		sort.Slice(lats, func(i, j int) bool { return lats[i] < lats[j] })
		sort.Slice(acks, func(i, j int) bool { return acks[i] < acks[j] })
		q := func(d []time.Duration, p float64) float64 {
			return float64(d[min(len(d)-1, int(p*float64(len(d))))].Microseconds()) / 1000
		}
		progress("%s: %d sends (%d failed, %d not seen by every one of %d online receivers); ack p50 %.1f ms; max %.1f ms",
			name, n, failed.Load(), incomplete, receivers, q(acks, 0.5), q(lats, 1))
		result(name+"_last_push_p50", q(lats, 0.5), "ms")
		result(name+"_last_push_p99", q(lats, 0.99), "ms")
		result(name+"_incomplete_sends", float64(incomplete+int(failed.Load())), "sends")
		return nil
	}
	if err := phase("baseline_group500", imapi.ConvGroup, baseBenchGroup, *baseSends, *baseInterval, *baseMembers-1,
		func(int) []string { return nil }); err != nil {
		return err
	}
	if *profile != "" {
		d := time.Duration(*sends) * *interval
		go func() {
			if err := fetchProfile(srv.debugAddr, *profile, d); err != nil {
				progress("profile: %v", err)
			}
		}()
	}
	// Every tenth super-group send mentions a member: the side work goes
	// through JetStream as in production.
	if err := phase(fmt.Sprintf("supergroup_%dk_%d_online", *members/1000, *online), imapi.ConvSuper, superBenchGroup, *sends, *interval, *online,
		func(i int) []string {
			if i%10 == 0 {
				return []string{account(1 + i%*online)}
			}
			return nil
		}); err != nil {
		return err
	}
	dumpMetrics(srv.debugAddr, []string{"longlink_gateway_super_", "longlink_service_super_jobs_total", "longlink_gateway_slow_consumers_total"})
	return nil
}

// runSuperWorker holds logged-in connections of u<first> … and records, per
// conversation and seq, how many of them received the message push and
// when the last one did. "report <conv>" on stdin prints "rx <seq> <count>
// <unix ns>" lines, then "end".
func runSuperWorker(args []string) error {
	fs := flag.NewFlagSet("supergroup-worker", flag.ContinueOnError)
	addr := fs.String("addr", "", "gateway address")
	wf := addWorkerFlags(fs)
	first := fs.Int("first", 1, "first account index")
	count := fs.Int("count", 1, "accounts")
	if err := fs.Parse(args); err != nil {
		return err
	}
	d, err := wf.dialer(30 * time.Second)
	if err != nil {
		return err
	}
	type key struct {
		conv string
		seq  int64
	}
	type rx struct {
		count int
		last  int64
	}
	var (
		mu    sync.Mutex
		got   = map[key]*rx{}
		conns memberConns
	)
	onPush := func(f link.Frame) {
		if f.Op != imapi.OpPush {
			return
		}
		now := time.Now().UnixNano()
		var m struct {
			ConvID string `json:"conv_id"`
			Seq    int64  `json:"seq"`
		}
		if json.Unmarshal(f.Body, &m) != nil {
			return
		}
		mu.Lock()
		r := got[key{m.ConvID, m.Seq}]
		if r == nil {
			r = &rx{}
			got[key{m.ConvID, m.Seq}] = r
		}
		r.count++
		r.last = max(r.last, now)
		mu.Unlock()
	}
	go conns.heartbeats()
	err = openAll(0, *count, 32, func(i int) error {
		c, err := d.open(*addr, *first+i)
		if err != nil {
			return err
		}
		conns.add(c)
		go readAll(c, onPush)
		return nil
	})
	if err != nil {
		fmt.Printf("error %v\n", err)
		return nil
	}
	fmt.Printf("ready %d\n", conns.len())
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		conv, ok := strings.CutPrefix(sc.Text(), "report ")
		if !ok {
			continue
		}
		mu.Lock()
		w := bufio.NewWriter(os.Stdout)
		for k, r := range got {
			if k.conv == conv {
				fmt.Fprintf(w, "rx %d %d %d\n", k.seq, r.count, r.last)
			}
		}
		mu.Unlock()
		fmt.Fprintln(w, "end")
		_ = w.Flush()
	}
	return nil
}
