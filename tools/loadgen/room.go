package main

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
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
// Most member connections are read by the workers' own epoll loops that
// discard the bytes (no decryption); every -sample'th connection decrypts
// and decodes its room.messages frames and records the delay from the
// message's server time to its arrival in a 1 ms histogram.

const (
	benchRoom   = "bench-room"
	benchSecret = "bench-app-secret-0123456789"
	busPassword = "bench-bus-password-0123456789"
	histBuckets = 10000 // 1 ms each; the last one holds everything above
)

func runRoom(args []string) error {
	fs := flag.NewFlagSet("room", flag.ContinueOnError)
	bin := fs.String("bin", "longlink", "longlink binary")
	members := fs.Int("members", 45000, "room members (connections)")
	gateways := fs.Int("gateways", 3, "gateway processes")
	workers := fs.Int("workers", 4, "load worker processes (sources 127.0.0.<2+i>)")
	rate := fs.Int("rate", 100, "messages per second into the room")
	duration := fs.Duration("duration", 20*time.Second, "measurement window")
	warmup := fs.Duration("warmup", 5*time.Second, "sending before the window")
	batch := fs.Duration("batch", 100*time.Millisecond, "gateways' room_batch_interval")
	sample := fs.Int("sample", 100, "every n-th member decodes and measures latency")
	bodyBytes := fs.Int("body-bytes", 64, "text bytes per message")
	serverCPU := fs.String("server-cpu", "0", "CPU list the server processes are pinned to once the members are in (taskset); empty: not pinned")
	clientCPU := fs.String("client-cpu", "1", "CPU list the load processes are pinned to once the members are in; empty: not pinned")
	if err := fs.Parse(args); err != nil {
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
	defer func() {
		for i := len(all) - 1; i >= 0; i-- {
			all[i].stop()
		}
	}()
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
			"-stride", strconv.Itoa(*workers), "-members", strconv.Itoa(*members), "-sample", strconv.Itoa(*sample)},
			workerArgs(i, key)...)
	})
	if err != nil {
		return err
	}
	defer stopWorkers()
	tell := func(cmd string) {
		for _, w := range ws {
			_ = w.send(cmd)
		}
	}
	start = time.Now()
	tell("connect")
	for i, w := range ws {
		line, err := w.expect("ready")
		if err != nil {
			return err
		}
		progress("worker %d: %s", i+1, line)
	}
	progress("%d members entered the room in %s", *members, time.Since(start).Round(time.Millisecond))
	for i, s := range srvs {
		m := scrape(s.debugAddr)
		progress("gateway %d: %v room members, %v sessions", i+1, m["longlink_gateway_room_members"], m["longlink_gateway_sessions"])
	}
	// The crowd enters on every CPU; the figure is measured with the
	// servers and the load apart.
	for _, s := range all {
		pin(s.cmd.Process.Pid, *serverCPU)
	}
	for _, w := range ws {
		pin(w.cmd.Process.Pid, *clientCPU)
	}

	snd, err := newSender(srvs[0].linkAddr, key, *members, *bodyBytes)
	if err != nil {
		return err
	}
	pin(os.Getpid(), *clientCPU)
	defer snd.close()
	progress("the sender is in the room")
	sendCtx, stopSending := context.WithCancel(ctx)
	defer stopSending()
	go snd.run(sendCtx, *rate)
	time.Sleep(*warmup)

	type snap struct {
		cpu        float64 // seconds, all server processes
		deliveries float64
		drops      float64
		skipped    float64
		frames     float64 // room.messages frames
		direct     float64 // of which written by the gateways' room writers themselves
		rounds     float64 // rounds of writes, and their total seconds
		roundSecs  float64
		stretched  float64 // batch intervals stretched to the end of a round
	}
	take := func() (snap, error) {
		var sn snap
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
	tell("start")
	sent0 := snd.acked.Load()
	t0 := time.Now()
	a, err := take()
	if err != nil {
		return err
	}
	time.Sleep(*duration)
	b, err := take()
	if err != nil {
		return err
	}
	elapsed := time.Since(t0).Seconds()
	sent := snd.acked.Load() - sent0
	tell("stop")
	hist := make([]int64, histBuckets)
	for _, w := range ws {
		line, err := w.expect("hist")
		if err != nil {
			return err
		}
		for i, f := range strings.Fields(line)[1:] {
			n, _ := strconv.ParseInt(f, 10, 64)
			if i < histBuckets {
				hist[i] += n
			}
		}
	}
	stopSending()
	snd.mu.Lock()
	if len(snd.codes) > 0 {
		progress("sends refused by code: %v", snd.codes)
	}
	snd.mu.Unlock()
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

	deliveries := b.deliveries - a.deliveries
	cpu := b.cpu - a.cpu
	progress("window %.1fs: %d messages acked (%d refused), %.0f deliveries, server CPU %.2fs (%.0f%% of one core), %.0f slow drops",
		elapsed, sent, snd.refused.Load(), deliveries, cpu, 100*cpu/elapsed, b.drops-a.drops)
	p50, p99, n := quantile(hist, 0.50), quantile(hist, 0.99), int64(0)
	for _, c := range hist {
		n += c
	}
	progress("latency samples: %d (message server time → decoded by a sampled member)", n)
	result("room_fanout_offered_msgs_per_sec", float64(*rate), "msg/s")
	result("room_fanout_members", float64(*members), "conns")
	result("room_fanout_deliveries_per_sec", deliveries/elapsed, "deliveries/s")
	if deliveries > 0 {
		result("room_fanout_server_cpu_per_delivery", cpu/deliveries*1e6, "us")
	}
	// What the latency is made of: frames the gateways wrote, what one cost
	// the servers, and how long a round of writes to every member took.
	frames := b.frames - a.frames
	result("room_fanout_frames_per_sec", frames/elapsed, "frames/s")
	if frames > 0 {
		result("room_fanout_server_cpu_per_frame", cpu/frames*1e6, "us")
		progress("%.0f%% of the frames written by the room writers themselves; %.0f batch intervals stretched to the end of a round",
			100*(b.direct-a.direct)/frames, b.stretched-a.stretched)
	}
	if n := b.rounds - a.rounds; n > 0 {
		result("room_fanout_round_mean", (b.roundSecs-a.roundSecs)/n*1000, "ms")
	}
	if pubTotal > 0 {
		sum := 0.0
		for i := range srvs {
			sum += copies[i]
			progress("gateway %d received %.0f room messages from the bus in all", i+1, copies[i])
		}
		progress("the services published %.0f room messages in all", pubTotal)
		result("room_fanout_bus_copies_per_message_per_gateway", sum/float64(len(srvs))/pubTotal, "copies")
	}
	result("room_fanout_latency_p50", float64(p50), "ms")
	result("room_fanout_latency_p99", float64(p99), "ms")
	result("room_fanout_skipped_per_sec", (b.skipped-a.skipped)/elapsed, "deliveries/s")
	result("room_fanout_slow_drops", b.drops-a.drops, "sessions")
	return nil
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
  heartbeat: 300s
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

// pin moves every thread of a process to the CPUs in list (taskset -a).
func pin(pid int, list string) {
	if list == "" {
		return
	}
	if out, err := exec.Command("taskset", "-a", "-p", "-c", list, strconv.Itoa(pid)).CombinedOutput(); err != nil {
		progress("taskset %d: %v %s", pid, err, out)
	}
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
	s := &sender{c: c, body: body, codes: map[imapi.Code]int{}}
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

func (s *sender) run(ctx context.Context, rate int) {
	t := time.NewTicker(time.Second / time.Duration(rate))
	defer t.Stop()
	seq := uint32(10)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			seq++
			req, _ := json.Marshal(imapi.RoomSendReq{RoomID: benchRoom, ClientMsgID: "c" + strconv.Itoa(int(seq)), Type: "text", Body: s.body})
			if err := s.c.WriteFrame(link.Frame{Op: imapi.OpRoomSend, Seq: seq, Body: req}); err != nil {
				return
			}
		}
	}
}

func (s *sender) close() { _ = s.c.Close() }

// roomTimeout bounds each step of a member's entry (a crowd enters at once).
const roomTimeout = 60 * time.Second

// runRoomWorker connects its share of the members on "connect", then
// records latency from "start" to "stop" and prints the histogram.
func runRoomWorker(args []string) error {
	fs := flag.NewFlagSet("room-worker", flag.ContinueOnError)
	addrsFlag := fs.String("addrs", "", "gateway addresses, comma-separated (member u goes to addrs[u % len])")
	wf := addWorkerFlags(fs)
	index := fs.Int("index", 0, "this worker's index")
	stride := fs.Int("stride", 1, "number of workers")
	members := fs.Int("members", 0, "room members in all")
	sample := fs.Int("sample", 100, "every n-th member decodes")
	if err := fs.Parse(args); err != nil {
		return err
	}
	d, err := wf.dialer(roomTimeout)
	if err != nil {
		return err
	}
	addrs := strings.Split(*addrsFlag, ",")
	ep, err := newDiscarder()
	if err != nil {
		return err
	}
	var (
		recording atomic.Bool
		hist      [histBuckets]atomic.Int64
		keep      memberConns
	)
	decode := func(c *link.Conn) {
		for {
			f, err := c.ReadFrame()
			if err != nil {
				return
			}
			if f.Op != imapi.OpRoomMessages || !recording.Load() {
				continue
			}
			var b struct {
				Messages []struct {
					Time int64 `json:"time"`
				} `json:"messages"`
			}
			if json.Unmarshal(f.Body, &b) != nil {
				continue
			}
			now := time.Now().UnixMilli()
			for _, m := range b.Messages {
				d := max(0, min(int(now-m.Time), histBuckets-1))
				hist[d].Add(1)
			}
		}
	}
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		switch sc.Text() {
		case "connect":
			var redials atomic.Int64
			// Worker index's members are index, index+stride, …
			n := (*members - *index + *stride - 1) / *stride
			err := openAll(0, n, 64, func(k int) error {
				u := *index + k*(*stride)
				// A crowd entering at once on a busy machine sees
				// handshakes and logins time out now and then; the member
				// tries again (both are idempotent).
				var c *link.Conn
				var err error
				for attempt := 1; attempt <= 5; attempt++ {
					if c, err = enterRoom(d, addrs[u%len(addrs)], u); err == nil {
						break
					}
					redials.Add(1)
					time.Sleep(time.Duration(attempt) * time.Second)
				}
				if err != nil {
					return err
				}
				keep.add(c)
				if u%*sample == 0 {
					go decode(c)
					return nil
				}
				return ep.add(c.NetConn())
			})
			if err != nil {
				fmt.Printf("error %v\n", err)
				continue
			}
			fmt.Printf("ready %d (%d redials)\n", keep.len(), redials.Load())
		case "start":
			for i := range hist {
				hist[i].Store(0)
			}
			recording.Store(true)
		case "stop":
			recording.Store(false)
			var b strings.Builder
			b.WriteString("hist")
			for i := range hist {
				b.WriteByte(' ')
				b.WriteString(strconv.FormatInt(hist[i].Load(), 10))
			}
			fmt.Println(b.String())
		}
	}
	return nil
}

// discarder reads and drops whatever arrives on its sockets, from a few
// goroutines waiting on one epoll set (no goroutine or buffer per socket).
type discarder struct {
	epfd  int
	mu    sync.Mutex
	conns map[int32]net.Conn // keeps them open
}

func newDiscarder() (*discarder, error) {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll: %w", err)
	}
	d := &discarder{epfd: fd, conns: map[int32]net.Conn{}}
	for range 2 {
		go d.loop()
	}
	return d, nil
}

func (d *discarder) add(c net.Conn) error {
	sc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		return err
	}
	var fd int32
	if err := sc.Control(func(f uintptr) { fd = int32(f) }); err != nil {
		return err
	}
	d.mu.Lock()
	d.conns[fd] = c
	d.mu.Unlock()
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: fd}
	return syscall.EpollCtl(d.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev)
}

func (d *discarder) loop() {
	evs := make([]syscall.EpollEvent, 256)
	buf := make([]byte, 256<<10)
	for {
		n, err := syscall.EpollWait(d.epfd, evs, -1)
		if err != nil {
			if err == syscall.EINTR {
				continue
			}
			return
		}
		for _, ev := range evs[:n] {
			for {
				m, err := syscall.Read(int(ev.Fd), buf)
				if m <= 0 || err != nil {
					if err != syscall.EAGAIN && err != syscall.EINTR {
						_ = syscall.EpollCtl(d.epfd, syscall.EPOLL_CTL_DEL, int(ev.Fd), nil)
					}
					break
				}
				if m < len(buf) {
					break
				}
			}
		}
	}
}
