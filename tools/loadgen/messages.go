package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/sdk"
)

// runMessages measures durable 1:1 messages end to end through the SDK:
// senders send to receivers at a fixed offered rate; latency is from the
// send call to the receiver's message event (the message is durable before
// the server pushes it).
func runMessages(args []string) error {
	fs := flag.NewFlagSet("messages", flag.ContinueOnError)
	bin := fs.String("bin", "longlink", "longlink binary")
	pairs := fs.Int("pairs", 100, "sender/receiver pairs (each pair is one conversation)")
	rates := fs.String("rate", "10000", "offered loads, messages per second in total; several (comma-separated) are run one after the other, each on a fresh server")
	duration := fs.Duration("duration", 20*time.Second, "measured period")
	warmup := fs.Duration("warmup", 3*time.Second, "unmeasured period before it")
	serverCPU := fs.String("server-cpu", "0", "CPU list for the server (taskset); empty: not pinned")
	syncMode := fs.String("sync", "full", "SQLite synchronous mode of the server: full (fsync per commit) or normal")
	profile := fs.String("cpuprofile", "", "write a CPU profile of the server during the measured period to this file")
	showMetrics := fs.String("metrics", "", "comma-separated metric name prefixes of the server to print at the end")
	selfProfile := fs.String("selfprofile", "", "write a CPU profile of the load generator to this file")
	queueDelay := fs.String("max-queue-delay", "", "the server's store.max_queue_delay (early shedding, e.g. 20ms; -1ms: off); empty: the server's default")
	sendWindow := fs.Int("send-window", 0, "the SDK's SendWindow (0: its default)")
	sendQueue := fs.Int("send-queue", 0, "the SDK's SendQueue (0: its default)")
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
	for _, r := range list {
		suffix := ""
		if len(list) > 1 {
			suffix = "_at_" + strconv.Itoa(r)
		}
		if err := runMessagesAt(msgOpts{bin: *bin, pairs: *pairs, rate: r, duration: *duration, warmup: *warmup,
			serverCPU: *serverCPU, syncMode: *syncMode, profile: *profile, showMetrics: *showMetrics, suffix: suffix,
			queueDelay: *queueDelay, sendWindow: *sendWindow, sendQueue: *sendQueue}); err != nil {
			return err
		}
	}
	return nil
}

type msgOpts struct {
	bin                                               string
	pairs, rate                                       int
	duration, warmup                                  time.Duration
	serverCPU, syncMode, profile, showMetrics, suffix string
	queueDelay                                        string
	sendWindow, sendQueue                             int
}

// runMessagesAt runs one load point on a fresh server.
func runMessagesAt(o msgOpts) error {
	ctx := context.Background()
	storeCfg := "synchronous: " + o.syncMode
	if o.queueDelay != "" {
		storeCfg += ", max_queue_delay: " + o.queueDelay
	}
	srv, err := startServer(ctx, serverOpts{bin: o.bin, cpu: o.serverCPU, users: 2 * o.pairs,
		extra: "store: {" + storeCfg + "}\n"})
	if err != nil {
		return err
	}
	defer srv.stop()

	var (
		delivered atomic.Int64
		// deliveries that happened inside the measured window, whenever
		// their message was sent: the rate the server sustains, which the
		// drain after the window cannot inflate.
		deliveredInWin atomic.Int64
		acked          atomic.Int64
		failed         atomic.Int64
		// sends the SDK refused at once because its own queue was full
		// (the server fell behind): failed to the application, not lost.
		queueFull int64
		latMu     sync.Mutex
		lats      []time.Duration // end-to-end, of messages sent in the window
		ackLats   []time.Duration
	)
	epoch := time.Now()
	var winStart, winEnd atomic.Int64 // nanoseconds since epoch
	winStart.Store(1 << 62)
	inWindow := func(sent int64) bool { return sent >= winStart.Load() && sent < winEnd.Load() }
	winEnd.Store(1 << 62)

	newClient := func(i int) (*sdk.Client, error) {
		return sdk.New(sdk.Config{
			Addresses:  []string{srv.linkAddr},
			ServerKeys: map[string][]byte{srv.key.ID: srv.key.Public},
			AppKey:     benchAppKey, Account: account(i), Token: token(i), DeviceType: "phone",
			EventBuffer: 4096, RequestTimeout: 30 * time.Second,
			SendWindow: o.sendWindow, SendQueue: o.sendQueue,
		})
	}
	var clients []*sdk.Client
	defer func() {
		for _, c := range clients {
			_ = c.Close()
		}
	}()
	var wg sync.WaitGroup
	for i := 0; i < 2*o.pairs; i++ {
		c, err := newClient(i)
		if err != nil {
			return err
		}
		clients = append(clients, c)
		c.Start()
		receiver := i >= o.pairs
		wg.Add(1)
		go func() {
			defer wg.Done()
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
					now := int64(time.Since(epoch))
					delivered.Add(1)
					if inWindow(now) {
						deliveredInWin.Add(1)
					}
					if inWindow(b.T) {
						latMu.Lock()
						lats = append(lats, time.Duration(now-b.T))
						latMu.Unlock()
					}
				case sdk.EventSent:
					acked.Add(1)
					if t, err := strconv.ParseInt(strings.SplitN(ev.ClientMsgID, "-", 2)[0], 10, 64); err == nil && inWindow(t) {
						latMu.Lock()
						ackLats = append(ackLats, time.Duration(int64(time.Since(epoch))-t))
						latMu.Unlock()
					}
				case sdk.EventSendFailed:
					failed.Add(1)
				}
			}
		}()
	}
	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	for _, c := range clients {
		if err := c.WaitConnected(cctx); err != nil {
			cancel()
			return fmt.Errorf("connect: %w", err)
		}
	}
	cancel()
	progress("%d clients connected; offering %d msg/s for %s after %s of warm-up", len(clients), o.rate, o.duration, o.warmup)

	// Pacing: every millisecond, send what the schedule says is due.
	start := time.Now()
	winStart.Store(int64(start.Add(o.warmup).Sub(epoch)))
	winEnd.Store(int64(start.Add(o.warmup + o.duration).Sub(epoch)))
	end := start.Add(o.warmup + o.duration)
	if o.profile != "" {
		go func() {
			time.Sleep(o.warmup)
			if err := fetchProfile(srv.debugAddr, o.profile, o.duration); err != nil {
				progress("profile: %v", err)
			}
		}()
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
		cpuStart, _ = srv.cpuTime()
		time.Sleep(time.Until(start.Add(o.warmup + o.duration)))
		cpuEnd, _ = srv.cpuTime()
	}()
	var sent int64
	var sentInWindow int64
	tick := time.NewTicker(time.Millisecond)
	lastReport := start
	var lastDelivered int64
	for now := range tick.C {
		if now.After(end) {
			break
		}
		due := int64(now.Sub(start).Seconds() * float64(o.rate))
		for ; sent < due; sent++ {
			i := int(sent % int64(o.pairs))
			t := int64(time.Since(epoch))
			body, _ := json.Marshal(map[string]int64{"t": t})
			req := imapi.SendReq{ConvType: imapi.ConvP2P, To: account(o.pairs + i), Type: "custom", Body: body,
				ClientMsgID: strconv.FormatInt(t, 10) + "-" + strconv.FormatInt(sent, 10)}
			if inWindow(t) {
				sentInWindow++
			}
			if _, err := clients[i].SendAsync(&req); errors.Is(err, sdk.ErrSendQueueFull) {
				queueFull++
			} else if err != nil {
				return err
			}
		}
		if now.Sub(lastReport) >= time.Second {
			d := delivered.Load()
			progress("t=%4.1fs sent %d acked %d delivered %d (%d/s) failed %d, SDK queue full %d", now.Sub(start).Seconds(), sent, acked.Load(), d, d-lastDelivered, failed.Load(), queueFull)
			lastReport, lastDelivered = now, d
		}
	}
	tick.Stop()
	cpuWG.Wait()
	// Let what was sent arrive (bounded).
	drainUntil := time.Now().Add(15 * time.Second)
	for delivered.Load() < sent-queueFull && time.Now().Before(drainUntil) {
		time.Sleep(50 * time.Millisecond)
	}
	progress("sent %d, delivered %d, acked %d, failed %d, refused by the SDK (queue full) %d", sent, delivered.Load(), acked.Load(), failed.Load(), queueFull)

	if o.showMetrics != "" {
		dumpMetrics(srv.debugAddr, strings.Split(o.showMetrics, ","))
	}
	if win := deliveredInWin.Load(); win > 0 && cpuEnd > cpuStart {
		cpu := cpuEnd - cpuStart
		progress("server CPU in the window: %.2f s of %.0f s (%.0f%% of one core)", cpu.Seconds(), o.duration.Seconds(), 100*cpu.Seconds()/o.duration.Seconds())
		result("link_messages_server_cpu_per_msg"+o.suffix, float64(cpu.Microseconds())/float64(win), "us")
	}
	latMu.Lock()
	defer latMu.Unlock()
	if len(lats) == 0 {
		// The server fell so far behind that nothing sent in the window
		// arrived in time: throughput 0, no latency figure.
		progress("no message of the measured window was delivered in time")
		result("link_messages_offered"+o.suffix, float64(o.rate), "msg/s")
		result("link_messages_throughput"+o.suffix, 0, "msg/s")
		result("link_messages_delivered_ratio"+o.suffix, 0, "ratio")
		result("link_messages_delivered_rate"+o.suffix, float64(deliveredInWin.Load())/o.duration.Seconds(), "msg/s")
		return nil
	}
	sort.Slice(lats, func(i, j int) bool { return lats[i] < lats[j] })
	sort.Slice(ackLats, func(i, j int) bool { return ackLats[i] < ackLats[j] })
	pct := func(s []time.Duration, p float64) float64 {
		if len(s) == 0 {
			return 0
		}
		return float64(s[min(len(s)-1, int(float64(len(s))*p))].Microseconds()) / 1000
	}
	// Throughput: messages sent in the window that were delivered (before
	// the end of the drain), over the window. A server that falls behind
	// delivers fewer of them in time. delivered_rate counts deliveries
	// during the window instead: the rate actually sustained.
	result("link_messages_offered"+o.suffix, float64(o.rate), "msg/s")
	result("link_messages_sdk_queue_full"+o.suffix, float64(queueFull), "msgs")
	result("link_messages_throughput"+o.suffix, float64(len(lats))/o.duration.Seconds(), "msg/s")
	result("link_messages_delivered_ratio"+o.suffix, float64(len(lats))/float64(max(sentInWindow, 1)), "ratio")
	result("link_messages_delivered_rate"+o.suffix, float64(deliveredInWin.Load())/o.duration.Seconds(), "msg/s")
	result("link_messages_p50"+o.suffix, pct(lats, 0.50), "ms")
	result("link_messages_p99"+o.suffix, pct(lats, 0.99), "ms")
	result("link_messages_ack_p50"+o.suffix, pct(ackLats, 0.50), "ms")
	result("link_messages_ack_p99"+o.suffix, pct(ackLats, 0.99), "ms")
	return nil
}
