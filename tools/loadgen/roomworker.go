package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/link"
)

// roomTimeout bounds each step of a member's entry (a crowd enters at once).
const roomTimeout = 60 * time.Second

// roomCounter is what a worker's members count while recording: the
// room.messages frames they read, the messages in them (deliveries), the
// frames they could not decode, and each delivery's delay from the
// message's server time to its arrival.
type roomCounter struct {
	recording                       atomic.Bool
	frames, deliveries, undecodable atomic.Int64
	hist                            [histBuckets]atomic.Int64
	batches                         batchTimes
}

// frame counts one frame read by a member at now (unix ms).
func (rc *roomCounter) frame(f link.Frame, now int64) {
	if f.Op != imapi.OpRoomMessages || !rc.recording.Load() {
		return
	}
	times, err := rc.batches.times(f)
	if err != nil {
		rc.undecodable.Add(1)
		return
	}
	rc.frames.Add(1)
	rc.deliveries.Add(int64(len(times)))
	for _, t := range times {
		rc.hist[max(0, min(int(now-t), histBuckets-1))].Add(1)
	}
}

// reset zeroes the counts and starts recording.
func (rc *roomCounter) reset() {
	rc.frames.Store(0)
	rc.deliveries.Store(0)
	rc.undecodable.Store(0)
	for i := range rc.hist {
		rc.hist[i].Store(0)
	}
	rc.recording.Store(true)
}

// batchTimes decodes room.messages bodies into their messages' server
// times once per distinct body: a gateway writes one body to all its
// members in a round (sealed for each, the body compressed once), so a
// worker's thousands of members decode each body about once.
type batchTimes struct {
	mu sync.Mutex
	m  map[string][]int64
}

// batchTimesKept bounds the bodies kept (a few rounds of every gateway).
const batchTimesKept = 4096

func (b *batchTimes) times(f link.Frame) ([]int64, error) {
	b.mu.Lock()
	t, ok := b.m[string(f.Body)]
	b.mu.Unlock()
	if ok {
		return t, nil
	}
	body := f.Body
	if f.Flags&link.FlagCompressed != 0 {
		var err error
		if body, err = link.Inflate(body, link.DefaultMaxFrameSize); err != nil {
			return nil, err
		}
	}
	var batch struct {
		Messages []struct {
			Time int64 `json:"time"`
		} `json:"messages"`
	}
	if err := json.Unmarshal(body, &batch); err != nil {
		return nil, err
	}
	t = make([]int64, len(batch.Messages))
	for i, m := range batch.Messages {
		t[i] = m.Time
	}
	b.mu.Lock()
	if b.m == nil || len(b.m) >= batchTimesKept {
		b.m = make(map[string][]int64, batchTimesKept)
	}
	b.m[string(f.Body)] = t
	b.mu.Unlock()
	return t, nil
}

// runRoomWorker holds its share of the members (index, index+stride, …)
// and answers lines on stdin:
//
//	connect N   open members until those below N are in ("ready …")
//	plain A,…   later connects are plain TCP to these addresses (the baseline)
//	close       close every connection ("closed")
//	start       zero the counts and record
//	stop        stop recording; print "count frames=… deliveries=… undecodable=…" and "hist …"
func runRoomWorker(args []string) error {
	fs := flag.NewFlagSet("room-worker", flag.ContinueOnError)
	addrsFlag := fs.String("addrs", "", "gateway addresses, comma-separated (member u goes to addrs[u % len])")
	wf := addWorkerFlags(fs)
	index := fs.Int("index", 0, "this worker's index")
	stride := fs.Int("stride", 1, "number of workers")
	if err := fs.Parse(args); err != nil {
		return err
	}
	d, err := wf.dialer(roomTimeout)
	if err != nil {
		return err
	}
	// Members keep bodies compressed: each decodes through the shared
	// batchTimes.
	d.limits = link.Limits{KeepCompressed: true}
	addrs := strings.Split(*addrsFlag, ",")
	plain := false
	var (
		rc      roomCounter
		mu      sync.Mutex
		conns   []*link.Conn
		readers sync.WaitGroup
		opened  int // members of this worker's share opened so far
	)
	read := func(c *link.Conn) {
		defer readers.Done()
		for {
			f, err := c.ReadFrame()
			if err != nil {
				return
			}
			rc.frame(f, time.Now().UnixMilli())
		}
	}
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		cmd, arg, _ := strings.Cut(sc.Text(), " ")
		switch cmd {
		case "connect":
			target, err := strconv.Atoi(arg)
			if err != nil {
				fmt.Printf("error connect %q\n", arg)
				continue
			}
			// This worker's members below target: index + k*stride for k < n.
			n := max(0, (target-*index+*stride-1) / *stride)
			var redials atomic.Int64
			err = openAll(opened, n, 64, func(k int) error {
				u := *index + k*(*stride)
				addr := addrs[u%len(addrs)]
				// A crowd entering at once on a busy machine sees
				// dials, handshakes and logins time out now and then;
				// the member tries again (all are idempotent).
				var c *link.Conn
				var err error
				for attempt := 1; attempt <= 5; attempt++ {
					if plain {
						c, err = d.openPlain(addr)
					} else {
						c, err = enterRoom(d, addr, u)
					}
					if err == nil {
						break
					}
					redials.Add(1)
					time.Sleep(time.Duration(attempt) * time.Second)
				}
				if err != nil {
					return err
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
				readers.Add(1)
				go read(c)
				return nil
			})
			if err != nil {
				fmt.Printf("error %v\n", err)
				continue
			}
			opened = max(opened, n)
			mu.Lock()
			fmt.Printf("ready %d (%d redials)\n", len(conns), redials.Load())
			mu.Unlock()
		case "plain":
			plain, addrs, opened = true, strings.Split(arg, ","), 0
		case "close":
			mu.Lock()
			for _, c := range conns {
				_ = c.Close()
			}
			conns = nil
			mu.Unlock()
			readers.Wait()
			opened = 0
			fmt.Println("closed")
		case "start":
			rc.reset()
		case "stop":
			rc.recording.Store(false)
			fmt.Printf("count frames=%d deliveries=%d undecodable=%d\n", rc.frames.Load(), rc.deliveries.Load(), rc.undecodable.Load())
			var b strings.Builder
			b.WriteString("hist")
			for i := range rc.hist {
				b.WriteByte(' ')
				b.WriteString(strconv.FormatInt(rc.hist[i].Load(), 10))
			}
			fmt.Println(b.String())
		}
	}
	return nil
}

// openPlain dials addr from the dialer's source address for the plain
// TCP fan-out: no handshake, no login.
func (d memberDialer) openPlain(addr string) (*link.Conn, error) {
	nd := &net.Dialer{Timeout: d.timeout}
	if d.src != "" {
		nd.LocalAddr = &net.TCPAddr{IP: net.ParseIP(d.src)}
	}
	nc, err := nd.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return link.NewPlain(nc, d.limits), nil
}
