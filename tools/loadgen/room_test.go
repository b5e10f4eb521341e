package main

import (
	"encoding/json"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/link"
)

func roomMsgs(t *testing.T, times ...int64) [][]byte {
	t.Helper()
	var out [][]byte
	for i, tm := range times {
		m, err := json.Marshal(imapi.RoomMessage{RoomID: benchRoom, MsgID: "m" + strconv.Itoa(i), Seq: int64(i + 1), From: "sender",
			Type: "text", Body: json.RawMessage(`{"text":"` + strings.Repeat("x", 64) + `"}`), Time: tm})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// The baseline's frames, read by a member as a plain Link connection with
// compressed bodies kept, count as the gateway's would: one frame, its
// messages, each message's delay; a small batch goes uncompressed.
func TestBareFrameCounted(t *testing.T) {
	big := make([]int64, 40)
	for i := range big {
		big[i] = 1000 + int64(i)
	}
	bigF, smallF := roomBatchFrame(benchRoom, roomMsgs(t, big...)), roomBatchFrame(benchRoom, roomMsgs(t, 1990))
	if bigF.Flags&link.FlagCompressed == 0 || smallF.Flags&link.FlagCompressed != 0 {
		t.Fatalf("flags %#x, %#x: want the large batch compressed, the small one not", bigF.Flags, smallF.Flags)
	}
	a, b := net.Pipe()
	defer a.Close()
	go func() {
		for _, f := range []link.Frame{bigF, smallF, bigF, {Op: imapi.OpHeartbeat, Flags: link.FlagResponse, Seq: 2}} {
			if _, err := a.Write(plainFrame(f)); err != nil {
				return
			}
		}
	}()
	c := link.NewPlain(b, link.Limits{KeepCompressed: true})
	var rc roomCounter
	rc.reset()
	for range 4 {
		f, err := c.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		rc.frame(f, 2000)
	}
	if rc.frames.Load() != 3 || rc.deliveries.Load() != 81 || rc.undecodable.Load() != 0 {
		t.Fatalf("frames %d deliveries %d undecodable %d, want 3, 81, 0", rc.frames.Load(), rc.deliveries.Load(), rc.undecodable.Load())
	}
	if len(rc.batches.m) != 2 {
		t.Fatalf("%d bodies decoded, want 2 (the repeated one from the cache)", len(rc.batches.m))
	}
	// delays: 2000-1000…2000-1039 twice, and 10 ms once
	if rc.hist[1000].Load() != 2 || rc.hist[961].Load() != 2 || rc.hist[10].Load() != 1 {
		t.Fatalf("histogram: 1000 ms %d, 961 ms %d, 10 ms %d", rc.hist[1000].Load(), rc.hist[961].Load(), rc.hist[10].Load())
	}
	rc.recording.Store(false)
	rc.frame(smallF, 3000)
	if rc.frames.Load() != 3 {
		t.Fatal("counted while not recording")
	}
	rc.reset()
	rc.frame(link.Frame{Op: imapi.OpRoomMessages, Flags: link.FlagPush | link.FlagCompressed, Body: []byte("not deflate")}, 0)
	rc.frame(link.Frame{Op: imapi.OpRoomMessages, Flags: link.FlagPush, Body: []byte("{")}, 0)
	if rc.undecodable.Load() != 2 || rc.frames.Load() != 0 {
		t.Fatalf("bad bodies: undecodable %d frames %d", rc.undecodable.Load(), rc.frames.Load())
	}
}

// The plain fan-out server writes batches of its own messages to every
// connected socket, each member counting the same messages, recent ones.
func TestBareFanoutServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { bareFanout(ln, 200, 20*time.Millisecond, 64, 2, stop); close(done) }()
	defer func() { close(stop); <-done }()
	const members = 5
	counters := make([]roomCounter, members)
	conns := make([]*link.Conn, members)
	for i := range conns {
		nc, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = link.NewPlain(nc, link.Limits{KeepCompressed: true})
		defer conns[i].Close()
		counters[i].reset()
	}
	// Read until every member has 50 messages from the batches after its
	// first (the first may have been written before all had connected).
	for i, c := range conns {
		_ = c.NetConn().SetReadDeadline(time.Now().Add(10 * time.Second))
		for n := 0; counters[i].deliveries.Load() < 50; n++ {
			f, err := c.ReadFrame()
			if err != nil {
				t.Fatalf("member %d: %v", i, err)
			}
			if n > 0 {
				counters[i].frame(f, time.Now().UnixMilli())
			}
		}
		if n := counters[i].frames.Load(); n < 2 {
			t.Fatalf("member %d: %d frames for %d messages: not batched", i, n, counters[i].deliveries.Load())
		}
		if counters[i].hist[histBuckets-1].Load() != 0 || counters[i].undecodable.Load() != 0 {
			t.Fatalf("member %d: messages older than the histogram or undecodable", i)
		}
	}
}

func TestParseStages(t *testing.T) {
	if s, err := parseStages("", 45000); err != nil || len(s) != 1 || s[0] != 45000 {
		t.Fatalf("default: %v %v", s, err)
	}
	if s, err := parseStages("2000, 8000,45000", 45000); err != nil || len(s) != 3 || s[1] != 8000 {
		t.Fatalf("list: %v %v", s, err)
	}
	for _, bad := range []string{"8000,2000", "2000,2000", "0", "50000", "x"} {
		if _, err := parseStages(bad, 45000); err == nil {
			t.Fatalf("%q accepted", bad)
		}
	}
}

func TestCPUList(t *testing.T) {
	for list, want := range map[string][]int{"0": {0}, "0-1": {0, 1}, "0,2-3": {0, 2, 3}, " 1\n": {1}} {
		got, err := parseCPUList(list)
		if err != nil || len(got) != len(want) {
			t.Fatalf("%q: %v %v", list, got, err)
		}
		for _, c := range want {
			if !got[c] {
				t.Fatalf("%q: %v lacks %d", list, got, c)
			}
		}
	}
	for _, bad := range []string{"", "x", "1-0", "-1"} {
		if _, err := parseCPUList(bad); err == nil {
			t.Fatalf("%q accepted", bad)
		}
	}
	// This process's threads all have its allowed CPUs.
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip("no /proc")
	}
	var mine map[int]bool
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
			mine, _ = parseCPUList(v)
		}
	}
	if n, err := threadsOutside(os.Getpid(), mine); err != nil || n != 0 {
		t.Fatalf("threads outside %v: %d %v", mine, n, err)
	}
	if n, err := threadsOutside(os.Getpid(), map[int]bool{1000: true}); err != nil || n == 0 {
		t.Fatalf("threads outside CPU 1000: %d %v", n, err)
	}
}
