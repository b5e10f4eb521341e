package transport

import (
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// refusingBatcher fails every message that asks for segmentation with EIO,
// as a kernel does for a device without TX checksum offload, and records
// the packets of the messages it accepts.
type refusingBatcher struct {
	mu   sync.Mutex
	got  [][]byte
	msgs int
}

func (b *refusingBatcher) ReadBatch([]ipv4.Message, int) (int, error) { select {} }

func (b *refusingBatcher) WriteBatch(ms []ipv4.Message, _ int) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, m := range ms {
		if len(m.OOB) > 0 {
			if i == 0 {
				return 0, os.NewSyscallError("sendmmsg", unix.EIO)
			}
			return i, nil
		}
		for _, p := range m.Buffers {
			b.got = append(b.got, append([]byte(nil), p...))
		}
		b.msgs++
	}
	return len(ms), nil
}

func TestBatchWriterGSOFallback(t *testing.T) {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	stats := &SealStats{}
	fake := &refusingBatcher{}
	w := &batchWriter{pc: c, bc: fake, stats: stats, q: make(chan outPacket, 4096), done: make(chan struct{})}
	w.gso.Store(true)
	defer w.close()
	const n = 100
	for i := 0; i < n; i++ {
		bp := pktPool.Get().(*[]byte)
		*bp = append((*bp)[:0], make([]byte, 1000)...)
		(*bp)[0] = byte(i)
		if err := w.send(bp, c.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	go w.loop() // all queued: the first batch holds a run
	deadline := time.Now().Add(5 * time.Second)
	for {
		fake.mu.Lock()
		got, msgs := len(fake.got), fake.msgs
		fake.mu.Unlock()
		if got == n {
			if msgs != n {
				t.Fatalf("%d packets in %d messages, want one per message", got, msgs)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d packets sent", got, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	for i, p := range fake.got {
		if p[0] != byte(i) {
			t.Fatalf("packet %d out of order (%d)", i, p[0])
		}
	}
	if w.gso.Load() || stats.GSOFallbacks.Load() != 1 {
		t.Fatalf("gso %v, fallbacks %d; want off, 1", w.gso.Load(), stats.GSOFallbacks.Load())
	}
	if e, _ := w.err.Load().(error); e != nil {
		t.Fatalf("writer failed: %v", e)
	}
}
