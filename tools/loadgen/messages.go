package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/sdk"
)

// runMessages measures durable 1:1 messages end to end: senders send to
// receivers at a fixed offered rate; latency is from the send call to the
// receiver's message event (the message is durable before the server
// pushes it). Several rates make a sweep, each point on a fresh server; the
// figure is the highest offered rate whose p99 stays within -goal-p99 while
// the whole offered rate is delivered. With -baseline each rate is also
// offered to the bare path (bare.go) in the same run.
func runMessages(args []string) error {
	fs := flag.NewFlagSet("messages", flag.ContinueOnError)
	bin := fs.String("bin", "longlink", "longlink binary")
	pairs := fs.Int("pairs", 100, "sender/receiver pairs (each pair is one conversation)")
	rates := fs.String("rate", "10000", "offered loads, messages per second in total; several (comma-separated) make a sweep, each on a fresh server")
	duration := fs.Duration("duration", 20*time.Second, "measured period")
	warmup := fs.Duration("warmup", 3*time.Second, "unmeasured period before it")
	serverCPU := fs.String("server-cpu", "0", "CPU list for the server (taskset); empty: not pinned")
	syncMode := fs.String("sync", "full", "SQLite synchronous mode of the server: full (fsync per commit) or normal")
	profile := fs.String("cpuprofile", "", "write a CPU profile of the server during the measured period to this file (one sweep point: .<rate> added)")
	showMetrics := fs.String("metrics", "", "comma-separated metric name prefixes of the server to print at the end")
	selfProfile := fs.String("selfprofile", "", "write a CPU profile of the load generator to this file")
	queueDelay := fs.String("max-queue-delay", "", "the server's store.max_queue_delay (early shedding, e.g. 20ms; -1ms: off); empty: the server's default")
	sendWindow := fs.Int("send-window", 0, "the SDK's SendWindow (0: its default)")
	sendQueue := fs.Int("send-queue", 0, "the SDK's SendQueue (0: its default)")
	goal := fs.Duration("goal-p99", 20*time.Millisecond, "latency goal of the sweep")
	stopAfter := fs.Int("stop-after", 2, "end the sweep after this many points in a row over the goal")
	baseline := fs.Bool("baseline", false, "also offer each rate to the bare path (bare NATS request/reply + bare SQLite group commit)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *selfProfile != "" {
		f, err := os.Create(*selfProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	var list []int
	for _, r := range strings.Split(*rates, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(r))
		if err != nil || n <= 0 {
			return fmt.Errorf("-rate: %q", r)
		}
		list = append(list, n)
	}
	sort.Ints(list)
	type series struct {
		name, figure string
		start        func(msgOpts) (msgTarget, error)
		best         int
		over         int
	}
	all := []*series{{name: "longlink", figure: "link_messages", start: startSDKTarget}}
	if *baseline {
		all = append(all, &series{name: "bare_nats_sqlite", figure: "baseline_bare_messages", start: startBareTarget})
	}
	for _, r := range list {
		for _, s := range all {
			if s.over >= *stopAfter {
				continue
			}
			suffix := ""
			if len(list) > 1 {
				suffix = "_at_" + strconv.Itoa(r)
			}
			prof := *profile
			if prof != "" && len(list) > 1 {
				prof += "." + strconv.Itoa(r)
			}
			o := msgOpts{bin: *bin, pairs: *pairs, rate: r, duration: *duration, warmup: *warmup,
				serverCPU: *serverCPU, syncMode: *syncMode, profile: prof, showMetrics: *showMetrics,
				figure: s.figure, suffix: suffix, series: s.name,
				queueDelay: *queueDelay, sendWindow: *sendWindow, sendQueue: *sendQueue}
			pt, err := measureMessages(o, s.start)
			if err != nil {
				return fmt.Errorf("%s at %d msg/s: %w", s.name, r, err)
			}
			if pt.p99 <= *goal && pt.throughput >= 0.98*float64(r) && pt.deliveredRatio >= 0.999 {
				s.best, s.over = r, 0
			} else {
				s.over++
			}
		}
	}
	if len(list) > 1 {
		for _, s := range all {
			result(fmt.Sprintf("%s_max_rate_p99_within_%dms", s.figure, goal.Milliseconds()), float64(s.best), "msg/s")
		}
	}
	return nil
}

type msgOpts struct {
	bin                                               string
	pairs, rate                                       int
	duration, warmup                                  time.Duration
	serverCPU, syncMode, profile, showMetrics, suffix string
	figure, series                                    string
	queueDelay                                        string
	sendWindow, sendQueue                             int
}

// msgTarget is a server under load with its clients: Longlink through the
// SDK, or the bare path.
type msgTarget interface {
	// connect opens 2*pairs clients (senders first) and calls on with
	// their events.
	connect(on msgEvents) error
	// send sends from client i to client pairs+i a message stamped t (ns
	// since the run's epoch) with id seq; errQueueFull when the client
	// refused it at once.
	send(i int, t, seq int64) error
	// cpuTime is the server processes' CPU time so far.
	cpuTime() (time.Duration, error)
	// finish prints what the target adds at the end (metrics).
	finish()
	close()
}

var errQueueFull = errors.New("client send queue full")

// msgEvents are what the clients report.
type msgEvents struct {
	delivered func(t int64) // a receiver got the message stamped t
	acked     func(t int64) // a sender's message stamped t is stored
	failed    func()
}

// msgPoint is one load point's outcome.
type msgPoint struct {
	throughput, deliveredRatio float64
	p50, p99                   time.Duration
}

// measureMessages runs one load point on a fresh target.
func measureMessages(o msgOpts, newTarget func(msgOpts) (msgTarget, error)) (msgPoint, error) {
	tg, err := newTarget(o)
	if err != nil {
		return msgPoint{}, err
	}
	defer tg.close()

	var (
		delivered atomic.Int64
		// deliveries that happened inside the measured window, whenever
		// their message was sent: the rate the server sustains, which the
		// drain after the window cannot inflate.
		deliveredInWin atomic.Int64
		acked          atomic.Int64
		failed         atomic.Int64
		// sends the client refused at once because its own queue was full
		// (the server fell behind): failed to the application, not lost.
		queueFull int64
		latMu     sync.Mutex
		lats      []time.Duration // end to end, of messages sent in the window
		ackLats   []time.Duration
	)
	epoch := time.Now()
	var winStart, winEnd atomic.Int64 // nanoseconds since epoch
	winStart.Store(1 << 62)
	winEnd.Store(1 << 62)
	inWindow := func(t int64) bool { return t >= winStart.Load() && t < winEnd.Load() }
	since := func() int64 { return int64(time.Since(epoch)) }
	err = tg.connect(msgEvents{
		delivered: func(t int64) {
			now := since()
			delivered.Add(1)
			if inWindow(now) {
				deliveredInWin.Add(1)
			}
			if inWindow(t) {
				latMu.Lock()
				lats = append(lats, time.Duration(now-t))
				latMu.Unlock()
			}
		},
		acked: func(t int64) {
			acked.Add(1)
			if inWindow(t) {
				latMu.Lock()
				ackLats = append(ackLats, time.Duration(since()-t))
				latMu.Unlock()
			}
		},
		failed: func() { failed.Add(1) },
	})
	if err != nil {
		return msgPoint{}, fmt.Errorf("connect: %w", err)
	}
	progress("%s: %d clients connected; offering %d msg/s for %s after %s of warm-up", o.series, 2*o.pairs, o.rate, o.duration, o.warmup)

	// Pacing: every millisecond, send what the schedule says is due.
	start := time.Now()
	winStart.Store(int64(start.Add(o.warmup).Sub(epoch)))
	winEnd.Store(int64(start.Add(o.warmup + o.duration).Sub(epoch)))
	end := start.Add(o.warmup + o.duration)
	if o.profile != "" {
		if pt, ok := tg.(interface{ debug() string }); ok {
			go func() {
				time.Sleep(o.warmup)
				if err := fetchProfile(pt.debug(), o.profile, o.duration); err != nil {
					progress("profile: %v", err)
				}
			}()
		}
	}
	// The server's CPU time over the window: per delivered message it is
	// the figure that holds when other work shares the cores (latency
	// does not).
	var cpuStart, cpuEnd time.Duration
	var cpuWG sync.WaitGroup
	cpuWG.Add(1)
	go func() {
		defer cpuWG.Done()
		time.Sleep(time.Until(start.Add(o.warmup)))
		cpuStart, _ = tg.cpuTime()
		time.Sleep(time.Until(start.Add(o.warmup + o.duration)))
		cpuEnd, _ = tg.cpuTime()
	}()
	var sent, sentInWindow int64
	tick := time.NewTicker(time.Millisecond)
	lastReport := start
	var lastDelivered int64
	for now := range tick.C {
		if now.After(end) {
			break
		}
		due := int64(now.Sub(start).Seconds() * float64(o.rate))
		for ; sent < due; sent++ {
			t := since()
			if inWindow(t) {
				sentInWindow++
			}
			if err := tg.send(int(sent%int64(o.pairs)), t, sent); errors.Is(err, errQueueFull) {
				queueFull++
			} else if err != nil {
				return msgPoint{}, err
			}
		}
		if now.Sub(lastReport) >= time.Second {
			d := delivered.Load()
			progress("t=%4.1fs sent %d acked %d delivered %d (%d/s) failed %d, client queue full %d", now.Sub(start).Seconds(), sent, acked.Load(), d, d-lastDelivered, failed.Load(), queueFull)
			lastReport, lastDelivered = now, d
		}
	}
	tick.Stop()
	cpuWG.Wait()
	// Let what was sent arrive (bounded): the window's late messages count
	// in its latency, not in its throughput.
	drain := 15 * time.Second
	drainUntil := time.Now().Add(drain)
	for delivered.Load() < sent-queueFull && time.Now().Before(drainUntil) {
		time.Sleep(50 * time.Millisecond)
	}
	progress("sent %d, delivered %d, acked %d, failed %d, refused by the client (queue full) %d", sent, delivered.Load(), acked.Load(), failed.Load(), queueFull)
	tg.finish()

	f := o.figure
	pt := msgPoint{throughput: float64(deliveredInWin.Load()) / o.duration.Seconds()}
	if win := deliveredInWin.Load(); win > 0 && cpuEnd > cpuStart {
		cpu := cpuEnd - cpuStart
		progress("server CPU in the window: %.2f s of %.0f s (%.0f%% of one core)", cpu.Seconds(), o.duration.Seconds(), 100*cpu.Seconds()/o.duration.Seconds())
		result(f+"_server_cpu_per_msg"+o.suffix, float64(cpu.Microseconds())/float64(win), "us")
	}
	latMu.Lock()
	defer latMu.Unlock()
	// Percentiles over every message sent in the window: one that did not
	// arrive by the end of the drain counts as the longest wait possible.
	missing := max(sentInWindow-queueFull-int64(len(lats)), 0)
	for range missing {
		lats = append(lats, drain+o.duration)
	}
	sort.Slice(lats, func(i, j int) bool { return lats[i] < lats[j] })
	sort.Slice(ackLats, func(i, j int) bool { return ackLats[i] < ackLats[j] })
	pct := func(s []time.Duration, p float64) time.Duration {
		if len(s) == 0 {
			return drain + o.duration
		}
		return s[min(len(s)-1, int(float64(len(s))*p))]
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	pt.p50, pt.p99 = pct(lats, 0.50), pct(lats, 0.99)
	pt.deliveredRatio = float64(int64(len(lats))-missing) / float64(max(sentInWindow-queueFull, 1))
	result(f+"_offered"+o.suffix, float64(o.rate), "msg/s")
	if queueFull > 0 {
		result(f+"_sdk_queue_full"+o.suffix, float64(queueFull), "msgs")
	}
	// Throughput: deliveries inside the window, over the window — the rate
	// sustained, which the drain after it cannot inflate.
	result(f+"_throughput"+o.suffix, pt.throughput, "msg/s")
	result(f+"_delivered_ratio"+o.suffix, pt.deliveredRatio, "ratio")
	result(f+"_p50"+o.suffix, ms(pt.p50), "ms")
	result(f+"_p99"+o.suffix, ms(pt.p99), "ms")
	result(f+"_ack_p50"+o.suffix, ms(pct(ackLats, 0.50)), "ms")
	result(f+"_ack_p99"+o.suffix, ms(pct(ackLats, 0.99)), "ms")
	fmt.Printf("POINT %s %d %.3f %.3f\n", o.series, o.rate, ms(pt.p50), ms(pt.p99))
	return pt, nil
}

// sdkTarget is `longlink core` and Go SDK clients.
type sdkTarget struct {
	o       msgOpts
	srv     *server
	clients []*sdk.Client
	wg      sync.WaitGroup
}

func startSDKTarget(o msgOpts) (msgTarget, error) {
	storeCfg := "synchronous: " + o.syncMode
	if o.queueDelay != "" {
		storeCfg += ", max_queue_delay: " + o.queueDelay
	}
	srv, err := startServer(context.Background(), serverOpts{bin: o.bin, cpu: o.serverCPU, users: 2 * o.pairs,
		extra: "store: {" + storeCfg + "}\n"})
	if err != nil {
		return nil, err
	}
	return &sdkTarget{o: o, srv: srv}, nil
}

func (t *sdkTarget) debug() string { return t.srv.debugAddr }

func (t *sdkTarget) connect(on msgEvents) error {
	for i := 0; i < 2*t.o.pairs; i++ {
		c, err := sdk.New(sdk.Config{
			Addresses:  []string{t.srv.linkAddr},
			ServerKeys: map[string][]byte{t.srv.key.ID: t.srv.key.Public},
			AppKey:     benchAppKey, Account: account(i), Token: token(i), DeviceType: "phone",
			EventBuffer: 4096, RequestTimeout: 30 * time.Second,
			SendWindow: t.o.sendWindow, SendQueue: t.o.sendQueue,
		})
		if err != nil {
			return err
		}
		t.clients = append(t.clients, c)
		c.Start()
		receiver := i >= t.o.pairs
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			for ev := range c.Events() {
				switch ev.Kind {
				case sdk.EventMessage:
					if !receiver {
						continue
					}
					var b struct {
						T int64 `json:"t"`
					}
					_ = json.Unmarshal(ev.Message.Body, &b)
					on.delivered(b.T)
				case sdk.EventSent:
					if ts, err := strconv.ParseInt(strings.SplitN(ev.ClientMsgID, "-", 2)[0], 10, 64); err == nil {
						on.acked(ts)
					}
				case sdk.EventSendFailed:
					on.failed()
				}
			}
		}()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, c := range t.clients {
		if err := c.WaitConnected(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (t *sdkTarget) send(i int, ts, seq int64) error {
	body, _ := json.Marshal(map[string]int64{"t": ts})
	req := imapi.SendReq{ConvType: imapi.ConvP2P, To: account(t.o.pairs + i), Type: "custom", Body: body,
		ClientMsgID: strconv.FormatInt(ts, 10) + "-" + strconv.FormatInt(seq, 10)}
	_, err := t.clients[i].SendAsync(&req)
	if errors.Is(err, sdk.ErrSendQueueFull) {
		return errQueueFull
	}
	return err
}

func (t *sdkTarget) cpuTime() (time.Duration, error) { return t.srv.cpuTime() }

func (t *sdkTarget) finish() {
	if t.o.showMetrics != "" {
		dumpMetrics(t.srv.debugAddr, strings.Split(t.o.showMetrics, ","))
	}
}

func (t *sdkTarget) close() {
	for _, c := range t.clients {
		_ = c.Close()
	}
	t.wg.Wait()
	t.srv.stop()
}

// bareTarget is `loadgen bare-messages-server` and plain TCP clients.
type bareTarget struct {
	o     msgOpts
	cmd   *exec.Cmd
	dir   string
	addr  string
	conns []*bareClient
}

type bareClient struct {
	c  net.Conn
	mu sync.Mutex
	w  *bufio.Writer
	// sent stamps by id, for the acks (the bare protocol's ack carries only the id).
	stamps sync.Map
}

func startBareTarget(o msgOpts) (msgTarget, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "loadgen-bare")
	if err != nil {
		return nil, err
	}
	argv := []string{self, "bare-messages-server", "-db", filepath.Join(dir, "bare.db")}
	if o.serverCPU != "" {
		argv = append([]string{"taskset", "-c", o.serverCPU}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	t := &bareTarget{o: o, cmd: cmd, dir: dir}
	line, err := bufio.NewReader(out).ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening ")
	if err != nil || !ok {
		t.close()
		return nil, fmt.Errorf("bare server: %q %v", line, err)
	}
	t.addr = addr
	progress("bare server pid %d listening on %s (cpu %q)", cmd.Process.Pid, addr, o.serverCPU)
	return t, nil
}

func (t *bareTarget) connect(on msgEvents) error {
	for i := 0; i < 2*t.o.pairs; i++ {
		c, err := net.Dial("tcp", t.addr)
		if err != nil {
			return err
		}
		bc := &bareClient{c: c, w: bufio.NewWriter(c)}
		t.conns = append(t.conns, bc)
		var login [4]byte
		binary.BigEndian.PutUint32(login[:], uint32(i))
		if err := bc.write(bareLogin, login[:]); err != nil {
			return err
		}
		go func() {
			r := bufio.NewReader(c)
			for {
				f, err := readBareFrame(r)
				if err != nil {
					return
				}
				switch {
				case f[0] == bareMsg && len(f) >= 9:
					on.delivered(int64(binary.BigEndian.Uint64(f[1:])))
				case f[0] == bareAck && len(f) >= 9:
					if ts, ok := bc.stamps.LoadAndDelete(binary.BigEndian.Uint64(f[1:])); ok {
						on.acked(ts.(int64))
					}
				}
			}
		}()
	}
	return nil
}

func (c *bareClient) write(typ byte, payload []byte) error {
	var hdr [5]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(1+len(payload)))
	hdr[4] = typ
	c.mu.Lock()
	defer c.mu.Unlock()
	_, _ = c.w.Write(hdr[:])
	_, _ = c.w.Write(payload)
	return c.w.Flush()
}

func (t *bareTarget) send(i int, ts, seq int64) error {
	// to u32, id u64, body: the stamp and as many bytes as the SDK's JSON body
	var p [4 + 8 + 8 + 16]byte
	binary.BigEndian.PutUint32(p[:], uint32(t.o.pairs+i))
	binary.BigEndian.PutUint64(p[4:], uint64(seq))
	binary.BigEndian.PutUint64(p[12:], uint64(ts))
	c := t.conns[i]
	c.stamps.Store(uint64(seq), ts)
	return c.write(bareSend, p[:])
}

func (t *bareTarget) cpuTime() (time.Duration, error) { return procCPUTime(t.cmd.Process.Pid) }

func (t *bareTarget) finish() {}

func (t *bareTarget) close() {
	for _, c := range t.conns {
		_ = c.c.Close()
	}
	if t.cmd.Process != nil {
		_ = t.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = t.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = t.cmd.Process.Kill()
		}
	}
	_ = os.RemoveAll(t.dir)
}
