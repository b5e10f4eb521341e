package main

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/link"
	"github.com/longlink/longlink/core/service/room"
	"github.com/longlink/longlink/core/service/session"
	"github.com/longlink/longlink/core/store"
)

// The chatroom fan-out figure: members of one room spread over several
// gateway processes on one bus, the bus, services and store in a process of
// their own, load clients in worker processes, a sender putting messages
// into the room at a fixed rate.
//
// Every member connection counts what it receives: its room.messages
// frames, the messages in them (deliveries) and each message's delay from
// its server time to its arrival, in a 1 ms histogram (roomworker.go). The
// room grows in stages (-stages: members in the room at each), each a point
// of the sweep; with -baseline the same stages are then measured against a
// plain TCP fan-out of the same frames to the same number of sockets
// (roombare.go).

const (
	benchRoom   = "bench-room"
	benchSecret = "bench-app-secret-0123456789"
	busPassword = "bench-bus-password-0123456789"
	histBuckets = 10000 // 1 ms each; the last one holds everything above
)

func runRoom(args []string) error {
	fs := flag.NewFlagSet("room", flag.ContinueOnError)
	bin := fs.String("bin", "longlink", "longlink binary")
	members := fs.Int("members", 45000, "room members (connections) at the last stage")
	stagesFlag := fs.String("stages", "", "members in the room at each point of the sweep, ascending, comma-separated (default: -members alone)")
	gateways := fs.Int("gateways", 3, "gateway processes")
	workers := fs.Int("workers", 4, "load worker processes (sources 127.0.0.<2+i>)")
	rate := fs.Int("rate", 100, "messages per second into the room")
	duration := fs.Duration("duration", 20*time.Second, "measurement window of each stage")
	warmup := fs.Duration("warmup", 5*time.Second, "sending before the window")
	batch := fs.Duration("batch", 100*time.Millisecond, "gateways' room_batch_interval")
	bodyBytes := fs.Int("body-bytes", 64, "text bytes per message")
	serverCPU := fs.String("server-cpu", "0", "CPU list the server processes are pinned to while a stage is measured (taskset); empty: not pinned")
	clientCPU := fs.String("client-cpu", "1", "CPU list the load processes are pinned to while a stage is measured; empty: not pinned")
	goal := fs.Duration("goal-p99", 200*time.Millisecond, "latency goal of the sweep")
	baseline := fs.Bool("baseline", false, "measure the same stages against a plain TCP fan-out of the same frames (room-bare-server processes)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	stages, err := parseStages(*stagesFlag, *members)
	if err != nil {
		return err
	}
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "loadgen-room")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	key, err := link.GenerateKey("bench-1")
	if err != nil {
		return err
	}
	busAddr, err := freePort()
	if err != nil {
		return err
	}
	start := time.Now()
	if err := seedRoom(ctx, filepath.Join(dir, "core.db"), *members); err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	progress("seeded %d users and the room in %s", *members+1, time.Since(start).Round(time.Millisecond))

	var srvs []*server // the gateway processes
	var all []*server  // and the services process: their CPU is the figure's
	stopServers := func() {
		for i := len(all) - 1; i >= 0; i-- {
			all[i].stop()
		}
		all, srvs = nil, nil
	}
	defer func() { stopServers() }()
	svc, err := startRoomServer(-1, dir, *bin, busAddr, key, *batch)
	if err != nil {
		return err
	}
	all = append(all, svc)
	for g := 0; g < *gateways; g++ {
		s, err := startRoomServer(g, dir, *bin, busAddr, key, *batch)
		if err != nil {
			return err
		}
		srvs = append(srvs, s)
		all = append(all, s)
	}
	var addrs []string
	for _, s := range srvs {
		addrs = append(addrs, s.linkAddr)
	}

	ws, stopWorkers, err := startWorkers(*workers, "", func(i int) []string {
		return append([]string{"room-worker", "-addrs", strings.Join(addrs, ","), "-index", strconv.Itoa(i),
			"-stride", strconv.Itoa(*workers)}, workerArgs(i, key)...)
	})
	if err != nil {
		return err
	}
	defer stopWorkers()
	sw := stageWorkers(ws)
	snd, err := newSender(srvs[0].linkAddr, key, *members, *bodyBytes)
	if err != nil {
		return err
	}
	defer snd.close()
	progress("the sender is in the room")

	// pinAll pins the server processes to servers and the load (workers
	// and this process, the sender) to load: the crowd enters on every
	// CPU, a stage is measured with the servers and the load apart.
	allCPUs := fmt.Sprintf("0-%d", runtime.NumCPU()-1)
	pinAll := func(pids []int, servers, load string) {
		for _, p := range pids {
			pin(p, servers)
		}
		for _, w := range ws {
			pin(w.cmd.Process.Pid, load)
		}
		pin(os.Getpid(), load)
	}
	pids := func() []int {
		var out []int
		for _, s := range all {
			out = append(out, s.cmd.Process.Pid)
		}
		return out
	}
	suffix := func(m int) string {
		if len(stages) == 1 {
			return ""
		}
		return "_at_" + strconv.Itoa(m)
	}
	type series struct {
		name, figure string
		best         int // members of the largest stage within the goal
	}
	ll := &series{name: "longlink", figure: "room_fanout"}
	for _, m := range stages {
		pinAll(pids(), allCPUs, allCPUs)
		t0 := time.Now()
		if err := sw.connect(m); err != nil {
			return err
		}
		progress("%d members in the room (%s to enter this stage)", m, time.Since(t0).Round(time.Millisecond))
		for i, s := range srvs {
			sm := scrape(s.debugAddr)
			progress("gateway %d: %v room members, %v sessions", i+1, sm["longlink_gateway_room_members"], sm["longlink_gateway_sessions"])
		}
		if *serverCPU != "" || *clientCPU != "" {
			pinAll(pids(), *serverCPU, *clientCPU)
		}
		sendCtx, stopSending := context.WithCancel(ctx)
		sending := make(chan struct{})
		go func() { snd.run(sendCtx, *rate); close(sending) }()
		time.Sleep(*warmup)
		var a, b roomSnap
		var acked0, sent int64
		win, err := sw.window(*duration, func(start bool) error {
			sn, err := takeRoomSnap(all)
			if start {
				a, acked0 = sn, snd.acked.Load()
			} else {
				b, sent = sn, snd.acked.Load()-acked0
			}
			return err
		})
		stopSending()
		<-sending
		if err != nil {
			return err
		}
		snd.mu.Lock()
		if len(snd.codes) > 0 {
			progress("sends refused by code so far: %v", snd.codes)
		}
		snd.mu.Unlock()
		f, sfx := ll.figure, suffix(m)
		cpu := b.cpu - a.cpu
		progress("window %.1fs: %d messages acked (%d refused so far), server CPU %.2fs (%.0f%% of one core), %.0f slow drops",
			win.elapsed, sent, snd.refused.Load(), cpu, 100*cpu/win.elapsed, b.drops-a.drops)
		result(f+"_members"+sfx, float64(m), "conns")
		result(f+"_sent_msgs_per_sec"+sfx, float64(sent)/win.elapsed, "msg/s")
		p50, p99 := win.report(f, sfx, m, *rate, cpu)
		result(f+"_gateway_deliveries_per_sec"+sfx, (b.deliveries-a.deliveries)/win.elapsed, "deliveries/s")
		if frames := b.frames - a.frames; frames > 0 {
			progress("the gateways wrote %.0f frames/s, %.0f%% by the room writers themselves; %.0f batch intervals stretched to the end of a round",
				frames/win.elapsed, 100*(b.direct-a.direct)/frames, b.stretched-a.stretched)
		}
		if n := b.rounds - a.rounds; n > 0 {
			result(f+"_round_mean"+sfx, (b.roundSecs-a.roundSecs)/n*1000, "ms")
		}
		result(f+"_skipped_per_sec"+sfx, (b.skipped-a.skipped)/win.elapsed, "deliveries/s")
		result(f+"_slow_drops"+sfx, b.drops-a.drops, "sessions")
		fmt.Printf("POINT %s %d %d %d\n", ll.name, m**rate, p50, p99)
		if time.Duration(p99)*time.Millisecond <= *goal && win.deliveries >= minDelivered*float64(m)*float64(*rate)*win.elapsed {
			ll.best = m
		}
	}
	// Copies: once the gateways have taken everything from the bus, each
	// has received every message the services published, once.
	var pubTotal float64
	copies := make([]float64, len(srvs))
	for range 40 {
		prev := append([]float64(nil), copies...)
		pubTotal = scrape(svc.debugAddr)["longlink_service_room_messages_total"]
		for i, s := range srvs {
			copies[i] = scrape(s.debugAddr)["longlink_gateway_room_messages_total"]
		}
		settled := true
		for i := range copies {
			settled = settled && copies[i] == prev[i] && copies[i] >= pubTotal
		}
		if settled {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if pubTotal > 0 {
		sum := 0.0
		for i := range srvs {
			sum += copies[i]
		}
		progress("the services published %.0f room messages in all; the gateways received %v", pubTotal, copies)
		result("room_fanout_bus_copies_per_message_per_gateway", sum/float64(len(srvs))/pubTotal, "copies")
	}
	sweeps := []*series{ll}
	if *baseline {
		bare := &series{name: "bare_tcp_fanout", figure: "baseline_bare_fanout"}
		sweeps = append(sweeps, bare)
		snd.close()
		if err := sw.closeAll(); err != nil {
			return err
		}
		stopServers()
		var bareAddrs []string
		var bareCmds []*exec.Cmd
		defer func() {
			for _, c := range bareCmds {
				_ = c.Process.Kill()
				_ = c.Wait()
			}
		}()
		for range *gateways {
			c, addr, err := startBareFanout(*rate, *batch, *bodyBytes)
			if err != nil {
				return err
			}
			bareCmds = append(bareCmds, c)
			bareAddrs = append(bareAddrs, addr)
		}
		progress("plain TCP fan-out servers on %v", bareAddrs)
		if err := sw.tell("plain " + strings.Join(bareAddrs, ",")); err != nil {
			return err
		}
		barePids := func() []int {
			var out []int
			for _, c := range bareCmds {
				out = append(out, c.Process.Pid)
			}
			return out
		}
		for _, m := range stages {
			pinAll(barePids(), allCPUs, allCPUs)
			if err := sw.connect(m); err != nil {
				return err
			}
			if *serverCPU != "" || *clientCPU != "" {
				pinAll(barePids(), *serverCPU, *clientCPU)
			}
			time.Sleep(*warmup)
			var cpuA, cpuB float64
			win, err := sw.window(*duration, func(start bool) error {
				c, err := pidsCPU(barePids())
				if start {
					cpuA = c
				} else {
					cpuB = c
				}
				return err
			})
			if err != nil {
				return err
			}
			cpu := cpuB - cpuA
			progress("%s, %d sockets, window %.1fs: server CPU %.2fs (%.0f%% of one core)", bare.name, m, win.elapsed, cpu, 100*cpu/win.elapsed)
			result(bare.figure+"_members"+suffix(m), float64(m), "conns")
			p50, p99 := win.report(bare.figure, suffix(m), m, *rate, cpu)
			fmt.Printf("POINT %s %d %d %d\n", bare.name, m**rate, p50, p99)
			if time.Duration(p99)*time.Millisecond <= *goal && win.deliveries >= minDelivered*float64(m)*float64(*rate)*win.elapsed {
				bare.best = m
			}
		}
	}
	if len(stages) > 1 {
		for _, s := range sweeps {
			result(fmt.Sprintf("%s_max_members_p99_within_%dms", s.figure, goal.Milliseconds()), float64(s.best), "conns")
			result(fmt.Sprintf("%s_max_deliveries_per_sec_p99_within_%dms", s.figure, goal.Milliseconds()), float64(s.best**rate), "deliveries/s")
		}
	}
	return nil
}

// minDelivered is the share of the offered deliveries a stage within the
// goal must count in its window: the members count whole batches, so a
// window of 8 s is ±1 batch interval (100 ms) at each end.
const minDelivered = 0.95

// parseStages reads -stages: ascending member counts, the last at most
// members; empty is members alone.
func parseStages(list string, members int) ([]int, error) {
	if strings.TrimSpace(list) == "" {
		return []int{members}, nil
	}
	var out []int
	for _, f := range strings.Split(list, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 || n > members || len(out) > 0 && n <= out[len(out)-1] {
			return nil, fmt.Errorf("-stages: %q (ascending counts up to -members %d)", list, members)
		}
		out = append(out, n)
	}
	return out, nil
}

// roomSnap is what the server processes have done so far.
type roomSnap struct {
	cpu        float64 // seconds, all server processes
	deliveries float64 // the gateways' own count
	drops      float64
	skipped    float64
	frames     float64 // room.messages frames
	direct     float64 // of which written by the gateways' room writers themselves
	rounds     float64 // rounds of writes, and their total seconds
	roundSecs  float64
	stretched  float64 // batch intervals stretched to the end of a round
}

func takeRoomSnap(all []*server) (roomSnap, error) {
	var sn roomSnap
	for _, s := range all {
		c, err := procCPUTime(s.cmd.Process.Pid)
		if err != nil {
			return sn, err
		}
		sn.cpu += c.Seconds()
		m := scrape(s.debugAddr)
		sn.deliveries += m["longlink_gateway_room_deliveries_total"]
		sn.drops += m["longlink_gateway_slow_consumers_total"]
		sn.skipped += m["longlink_gateway_room_skipped_total"]
		sn.frames += m["longlink_gateway_room_frames_total"]
		sn.direct += m["longlink_gateway_room_direct_writes_total"]
		sn.rounds += m["longlink_gateway_room_round_seconds_count"]
		sn.roundSecs += m["longlink_gateway_room_round_seconds_sum"]
		sn.stretched += m["longlink_gateway_room_stretched_total"]
	}
	return sn, nil
}

// pidsCPU is the CPU seconds the processes have used.
func pidsCPU(pids []int) (float64, error) {
	sum := 0.0
	for _, p := range pids {
		c, err := procCPUTime(p)
		if err != nil {
			return 0, err
		}
		sum += c.Seconds()
	}
	return sum, nil
}

// stageWorkers drives the room workers.
type stageWorkers []*workerProc

func (ws stageWorkers) tell(cmd string) error {
	for _, w := range ws {
		if err := w.send(cmd); err != nil {
			return err
		}
	}
	return nil
}

// connect has the workers open connections until m members are in.
func (ws stageWorkers) connect(m int) error {
	if err := ws.tell("connect " + strconv.Itoa(m)); err != nil {
		return err
	}
	for i, w := range ws {
		line, err := w.expect("ready")
		if err != nil {
			return err
		}
		progress("worker %d: %s", i+1, line)
	}
	return nil
}

// closeAll has the workers close every connection.
func (ws stageWorkers) closeAll() error {
	if err := ws.tell("close"); err != nil {
		return err
	}
	for _, w := range ws {
		if _, err := w.expect("closed"); err != nil {
			return err
		}
	}
	return nil
}

// roomWindow is what every member counted in one window.
type roomWindow struct {
	elapsed            float64 // seconds
	frames, deliveries float64
	undecodable        float64
	hist               []int64
	loadCPU            float64 // seconds the workers used: near the whole window, the load side sets the pace
}

// window has every member count what it receives for d. mark is called
// when the members have been told to start and again when told to stop,
// before their counts are collected (which takes a while on a busy load
// core): the server side's snapshots then span the members' counts.
func (ws stageWorkers) window(d time.Duration, mark func(start bool) error) (roomWindow, error) {
	w := roomWindow{hist: make([]int64, histBuckets)}
	var pids []int
	for _, wp := range ws {
		pids = append(pids, wp.cmd.Process.Pid)
	}
	if err := ws.tell("start"); err != nil {
		return w, err
	}
	t0 := time.Now()
	cpu0, err := pidsCPU(pids)
	if err != nil {
		return w, err
	}
	if err := mark(true); err != nil {
		return w, err
	}
	time.Sleep(time.Until(t0.Add(d)))
	if err := ws.tell("stop"); err != nil {
		return w, err
	}
	w.elapsed = time.Since(t0).Seconds()
	cpu1, err := pidsCPU(pids)
	if err != nil {
		return w, err
	}
	w.loadCPU = cpu1 - cpu0
	if err := mark(false); err != nil {
		return w, err
	}
	for _, wp := range ws {
		line, err := wp.expect("count")
		if err != nil {
			return w, err
		}
		kv := parseCounts(line)
		w.frames += kv["frames"]
		w.deliveries += kv["deliveries"]
		w.undecodable += kv["undecodable"]
		line, err = wp.expect("hist")
		if err != nil {
			return w, err
		}
		for i, f := range strings.Fields(line)[1:] {
			n, _ := strconv.ParseInt(f, 10, 64)
			if i < histBuckets {
				w.hist[i] += n
			}
		}
	}
	return w, nil
}

// report prints the window's RESULT lines under figure and suffix (m
// members, rate messages/s offered, cpu seconds of the servers) and
// returns the latency quantiles in ms.
func (w roomWindow) report(figure, suffix string, m, rate int, cpu float64) (p50, p99 int) {
	result(figure+"_offered_deliveries_per_sec"+suffix, float64(m*rate), "deliveries/s")
	result(figure+"_deliveries_per_sec"+suffix, w.deliveries/w.elapsed, "deliveries/s")
	result(figure+"_delivered_ratio"+suffix, w.deliveries/(float64(m*rate)*w.elapsed), "ratio")
	result(figure+"_frames_per_sec"+suffix, w.frames/w.elapsed, "frames/s")
	if w.deliveries > 0 {
		result(figure+"_server_cpu_per_delivery"+suffix, cpu/w.deliveries*1e6, "us")
		result(figure+"_server_cpu_per_frame"+suffix, cpu/w.frames*1e6, "us")
	}
	result(figure+"_load_cpu"+suffix, w.loadCPU/w.elapsed, "cores")
	if w.undecodable > 0 {
		progress("%.0f frames the members could not decode", w.undecodable)
	}
	n := int64(0)
	for _, c := range w.hist {
		n += c
	}
	p50, p99 = quantile(w.hist, 0.50), quantile(w.hist, 0.99)
	progress("latency samples: %d (every delivery: message server time → counted by its member)", n)
	result(figure+"_latency_p50"+suffix, float64(p50), "ms")
	result(figure+"_latency_p99"+suffix, float64(p99), "ms")
	return p50, p99
}

// parseCounts reads "count k=v k=v".
func parseCounts(line string) map[string]float64 {
	out := map[string]float64{}
	for _, f := range strings.Fields(line)[1:] {
		if k, v, ok := strings.Cut(f, "="); ok {
			out[k], _ = strconv.ParseFloat(v, 64)
		}
	}
	return out
}

// quantile returns the upper edge (ms) of the bucket holding quantile q.
func quantile(h []int64, q float64) int {
	var n int64
	for _, c := range h {
		n += c
	}
	if n == 0 {
		return 0
	}
	want := int64(float64(n)*q + 0.5)
	var acc int64
	for i, c := range h {
		acc += c
		if acc >= want {
			return i + 1
		}
	}
	return len(h)
}

// seedRoom creates the members u0…u(n-1), the sender u<n> and the room
// (owned by the sender, with rates that do not limit the benchmark).
func seedRoom(ctx context.Context, dbPath string, n int) error {
	cfg := store.Default()
	cfg.Path = dbPath
	cfg.Synchronous = "normal"
	st, err := store.Open(ctx, cfg, store.Deps{})
	if err != nil {
		return err
	}
	if err := st.PutApp(ctx, store.App{AppKey: benchAppKey, Secret: benchSecret, Devices: imapi.DevicesAllowAll, HeartbeatSec: 300}); err != nil {
		return err
	}
	if err := st.Close(); err != nil {
		return err
	}
	// The schema is there; the users and their tokens go in with one
	// transaction (45,000 single-row store calls took a sizeable part of
	// the benchmark's time bound).
	db, err := sql.Open("sqlite", "file:"+dbPath+"?_pragma=busy_timeout(5000)")
	if err != nil {
		return err
	}
	defer db.Close()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	users, err := tx.PrepareContext(ctx, `INSERT INTO users (appkey, account, name, disabled, created) VALUES (?, ?, '', 0, ?)`)
	if err != nil {
		return err
	}
	tokens, err := tx.PrepareContext(ctx, `INSERT INTO tokens (appkey, account, token_hash, expires, created) VALUES (?, ?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	now := time.Now()
	for i := 0; i <= n; i++ {
		if _, err := users.ExecContext(ctx, benchAppKey, account(i), now.UnixMilli()); err != nil {
			return err
		}
		if _, err := tokens.ExecContext(ctx, benchAppKey, account(i), hex.EncodeToString(session.HashToken(token(i))),
			now.Add(24*time.Hour).UnixMilli(), now.UnixMilli()); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	st, err = store.Open(ctx, cfg, store.Deps{})
	if err != nil {
		return err
	}
	defer st.Close()
	return st.CreateRoom(ctx, store.Room{AppKey: benchAppKey, RoomID: benchRoom, Name: "bench", Owner: account(n),
		HistorySize: 20, MsgRate: 100000, MemberRate: 100000})
}

// startRoomServer starts gateway process g (0…), or with g = -1 the
// services process: the bus (listening for the gateways), the services and
// the store, as an app-service node of a cluster is.
func startRoomServer(g int, dir, bin, busAddr string, key link.KeyPair, batch time.Duration) (*server, error) {
	s := &server{dir: filepath.Join(dir, fmt.Sprintf("node%d", g+1)), key: key}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return nil, err
	}
	var err error
	if s.linkAddr, err = freePort(); err != nil {
		return nil, err
	}
	if s.debugAddr, err = freePort(); err != nil {
		return nil, err
	}
	roles := "{services: false, gateway: true, server_api: false, weblink: false}"
	bus := fmt.Sprintf("{mode: external, urls: [\"nats://%s\"], user: longlink, password: %s}", busAddr, busPassword)
	extra := ""
	if g < 0 {
		roles = "{services: true, gateway: false, server_api: false, weblink: false}"
		bus = fmt.Sprintf("{listen: %q, user: longlink, password: %s}", busAddr, busPassword)
		extra = fmt.Sprintf(`store: {path: %s, synchronous: normal}
service:
  apps:
    - {appkey: %s, secret: %s, devices: allow_all, heartbeat: 300s}
`, filepath.Join(dir, "core.db"), benchAppKey, benchSecret)
	}
	cfg := fmt.Sprintf(`data_dir: %s
debug_listen: %s
roles: %s
bus: %s
%sgateway:
  id: gw-%d
  listen: %s
  keys: [{id: %s, private_key: %s}]
  heartbeat: 600s
  max_connections_per_ip: -1
  request_rate: 100000
  request_burst: 100000
  max_inflight: 4096
  room_batch_interval: %s
`, s.dir, s.debugAddr, roles, bus, extra, g+1, s.linkAddr, key.ID, link.EncodeKey(key.Private), batch)
	cfgPath := filepath.Join(s.dir, "core.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	s.cmd = exec.Command(bin, "core", "-config", cfgPath, "-log-level", "warn")
	s.cmd.Stdout = os.Stderr
	s.cmd.Stderr = os.Stderr
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start gateway %d: %w", g+1, err)
	}
	ready := s.linkAddr
	if g < 0 {
		ready = s.debugAddr
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", ready, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) || s.cmd.ProcessState != nil {
			s.stop()
			return nil, fmt.Errorf("node %d did not listen on %s", g+1, ready)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if g < 0 {
		progress("services, bus and store: pid %d, debug %s", s.cmd.Process.Pid, s.debugAddr)
	} else {
		progress("gateway %d: pid %d, link %s, debug %s", g+1, s.cmd.Process.Pid, s.linkAddr, s.debugAddr)
	}
	return s, nil
}

// pin moves every thread of a process to the CPUs in list (taskset -a),
// and again while some thread is outside them: a thread the process
// starts while taskset goes through its threads keeps the old CPUs (a
// room run once measured its servers at 175% of their one core).
func pin(pid int, list string) {
	if list == "" {
		return
	}
	want, err := parseCPUList(list)
	if err != nil {
		progress("pin %d: %v", pid, err)
		return
	}
	for range 10 {
		if out, err := exec.Command("taskset", "-a", "-p", "-c", list, strconv.Itoa(pid)).CombinedOutput(); err != nil {
			progress("taskset %d: %v %s", pid, err, out)
			return
		}
		n, err := threadsOutside(pid, want)
		if err != nil {
			progress("pin %d: %v", pid, err)
			return
		}
		if n == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	progress("pin %d: threads still outside CPUs %s", pid, list)
}

// parseCPUList reads a CPU list such as "0", "0-1" or "0,2-3".
func parseCPUList(list string) (map[int]bool, error) {
	out := map[int]bool{}
	for _, part := range strings.Split(strings.TrimSpace(list), ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err1 := strconv.Atoi(lo)
		b, err2 := a, error(nil)
		if isRange {
			b, err2 = strconv.Atoi(hi)
		}
		if err1 != nil || err2 != nil || a < 0 || b < a {
			return nil, fmt.Errorf("CPU list %q", list)
		}
		for c := a; c <= b; c++ {
			out[c] = true
		}
	}
	return out, nil
}

// threadsOutside counts the threads of pid whose allowed CPUs are not want
// (/proc/<pid>/task/*/status); threads gone meanwhile are skipped.
func threadsOutside(pid int, want map[int]bool) (int, error) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0, err
	}
	n := 0
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, t.Name()))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
				got, err := parseCPUList(v)
				if err != nil {
					return 0, err
				}
				if !maps.Equal(got, want) {
					n++
				}
			}
		}
	}
	return n, nil
}

// scrape reads the unlabelled values of a server's metrics.
func scrape(debugAddr string) map[string]float64 {
	out := map[string]float64{}
	resp, err := http.Get("http://" + debugAddr + "/metrics")
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") || strings.Contains(name, "{") {
			continue
		}
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			out[name] = f
		}
	}
	return out
}

// sender puts messages into the room over one Link connection, pipelined.
type sender struct {
	c       *link.Conn
	body    []byte
	acked   atomic.Int64
	refused atomic.Int64
	mu      sync.Mutex
	codes   map[imapi.Code]int // refusals by code
	seq     uint32             // the last request's (run after run: client message ids stay unique)
}

// enterRoom logs member u in through addr and enters the bench room.
func enterRoom(d memberDialer, addr string, u int) (*link.Conn, error) {
	tok := room.TokenFor(benchSecret, benchAppKey, benchRoom, account(u), imapi.RoleMember, time.Now().Add(time.Hour))
	return d.open(addr, u, memberCall{imapi.OpRoomEnter, imapi.RoomEnterReq{RoomID: benchRoom, Token: tok, History: 1}})
}

func newSender(addr string, key link.KeyPair, u, bodyBytes int) (*sender, error) {
	c, err := enterRoom(memberDialer{keyID: key.ID, pub: key.Public, timeout: roomTimeout}, addr, u)
	if err != nil {
		return nil, fmt.Errorf("sender: %w", err)
	}
	body, _ := json.Marshal(map[string]string{"text": strings.Repeat("x", bodyBytes)})
	s := &sender{c: c, body: body, codes: map[imapi.Code]int{}, seq: 10}
	go func() {
		for {
			f, err := c.ReadFrame()
			if err != nil {
				return
			}
			if f.IsResponse() && f.Op == imapi.OpRoomSend {
				if f.Code == imapi.OK {
					s.acked.Add(1)
				} else {
					s.refused.Add(1)
					s.mu.Lock()
					s.codes[f.Code]++
					s.mu.Unlock()
				}
			}
		}
	}()
	return s, nil
}

// run sends rate messages a second until ctx ends (one run at a time), by
// schedule: a tick that comes late sends what is due.
func (s *sender) run(ctx context.Context, rate int) {
	t := time.NewTicker(time.Second / time.Duration(min(rate, 1000)))
	defer t.Stop()
	start, sent := time.Now(), int64(0)
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			for due := int64(now.Sub(start).Seconds() * float64(rate)); sent < due; sent++ {
				s.seq++
				req, _ := json.Marshal(imapi.RoomSendReq{RoomID: benchRoom, ClientMsgID: "c" + strconv.Itoa(int(s.seq)), Type: "text", Body: s.body})
				if err := s.c.WriteFrame(link.Frame{Op: imapi.OpRoomSend, Seq: s.seq, Body: req}); err != nil {
					return
				}
			}
		}
	}
}

func (s *sender) close() { _ = s.c.Close() }
