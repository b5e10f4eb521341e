package sdk

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/longlink/longlink/core/imapi"
)

// noticeFake is a fake server that keeps a notice stream and answers
// notice.sync from it, with a reset from the stream's start for a position
// past its newest notice, as the service does.
type noticeFake struct {
	*fakeTransport
	mu     *sync.Mutex
	stream *[]imapi.Notice
}

func (f *noticeFake) Send(op imapi.Op, seq uint32, body []byte) error {
	if op != imapi.OpNoticeSync {
		return f.fakeTransport.Send(op, seq, body)
	}
	var req imapi.NoticeSyncReq
	_ = json.Unmarshal(body, &req)
	f.mu.Lock()
	var resp imapi.NoticeSyncResp
	if last := int64(len(*f.stream)); req.AfterSeq > last {
		resp.Reset, req.AfterSeq = true, 0
	}
	for _, n := range *f.stream {
		if n.Seq > req.AfterSeq && len(resp.Notices) < 2 {
			resp.Notices = append(resp.Notices, n)
		} else if n.Seq > req.AfterSeq {
			resp.HasMore = true
		}
	}
	f.mu.Unlock()
	b, _ := json.Marshal(&resp)
	f.in <- Incoming{Op: op, Seq: seq, Body: b}
	return nil
}

// Notices are delivered once each, in stream order: the ones kept on the
// server at connect (paged), pushes in order, and a lost push is fetched
// when the next one shows the gap.
func TestNoticeStream(t *testing.T) {
	var mu sync.Mutex
	stream := []imapi.Notice{}
	add := func(seq int64) imapi.Notice {
		n := imapi.Notice{Seq: seq, Kind: imapi.NoticeFriendRequest, From: "bob", To: "alice"}
		mu.Lock()
		stream = append(stream, n)
		mu.Unlock()
		return n
	}
	for s := int64(1); s <= 3; s++ {
		add(s)
	}
	var last atomic.Pointer[noticeFake]
	c, err := New(testConfig(func(ctx context.Context, addr string) (Transport, error) {
		f := &noticeFake{fakeTransport: newFake(addr, imapi.OK), mu: &mu, stream: &stream}
		last.Store(f)
		return f, nil
	}, "a"))
	if err != nil {
		t.Fatal(err)
	}
	c.Start()
	defer c.Close()
	push := func(n imapi.Notice) {
		b, _ := json.Marshal(&n)
		last.Load().in <- Incoming{Op: imapi.OpNotice, Push: true, Body: b}
	}
	var got []int64
	wait := func(n int) {
		t.Helper()
		timeout := time.After(5 * time.Second)
		for len(got) < n {
			select {
			case ev := <-c.Events():
				if ev.Kind == EventNotice {
					got = append(got, ev.Notice.Seq)
				}
			case <-timeout:
				t.Fatalf("got %v, want %d notices", got, n)
			}
		}
	}
	wait(3) // synced at connect, in two pages
	push(add(4))
	wait(4)
	add(5) // its push is lost
	push(add(6))
	push(imapi.Notice{Seq: 6, Kind: imapi.NoticeFriendRequest}) // a duplicate
	wait(6)
	select {
	case ev := <-c.Events():
		if ev.Kind == EventNotice {
			t.Fatalf("extra notice %d", ev.Notice.Seq)
		}
	case <-time.After(300 * time.Millisecond):
	}
	for i, s := range got {
		if s != int64(i+1) {
			t.Fatalf("delivered %v, want 1..6 in order", got)
		}
	}
	if c.LastNoticeSeq() != 6 {
		t.Fatalf("LastNoticeSeq %d", c.LastNoticeSeq())
	}
}

// A client whose stored position is past the server's newest notice (the
// server's data wiped or restored) gets a relations reset, adopts the
// server's position, and then gets the server's notices, synced and pushed.
func TestNoticePositionAheadOfServer(t *testing.T) {
	for _, tc := range []struct {
		name string
		kept int64 // notices 1..kept on the server
	}{{"restored", 3}, {"wiped", 0}} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var stream []imapi.Notice
			add := func(seq int64) imapi.Notice {
				n := imapi.Notice{Seq: seq, Kind: imapi.NoticeFriendRequest, From: "bob", To: "alice"}
				mu.Lock()
				stream = append(stream, n)
				mu.Unlock()
				return n
			}
			for s := int64(1); s <= tc.kept; s++ {
				add(s)
			}
			var last atomic.Pointer[noticeFake]
			cfg := testConfig(func(ctx context.Context, addr string) (Transport, error) {
				f := &noticeFake{fakeTransport: newFake(addr, imapi.OK), mu: &mu, stream: &stream}
				last.Store(f)
				return f, nil
			}, "a")
			cfg.LastNoticeSeq = 50
			c, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			c.Start()
			defer c.Close()
			resets := 0
			var got []int64
			timeout := time.After(5 * time.Second)
			next := func() {
				t.Helper()
				select {
				case ev := <-c.Events():
					switch ev.Kind {
					case EventRelationsReset:
						if len(got) > 0 {
							t.Fatalf("reset after notices %v", got)
						}
						resets++
					case EventNotice:
						got = append(got, ev.Notice.Seq)
					}
				case <-timeout:
					t.Fatalf("resets %d, notices %v", resets, got)
				}
			}
			for resets == 0 || int64(len(got)) < tc.kept {
				next()
			}
			if c.LastNoticeSeq() != tc.kept {
				t.Fatalf("LastNoticeSeq %d, want the server's %d", c.LastNoticeSeq(), tc.kept)
			}
			n := add(tc.kept + 1)
			b, _ := json.Marshal(&n)
			last.Load().in <- Incoming{Op: imapi.OpNotice, Push: true, Body: b}
			for int64(len(got)) < tc.kept+1 {
				next()
			}
			for i, s := range got {
				if s != int64(i+1) {
					t.Fatalf("delivered %v, want 1..%d in order", got, tc.kept+1)
				}
			}
			if resets != 1 || c.LastNoticeSeq() != tc.kept+1 {
				t.Fatalf("resets %d, LastNoticeSeq %d", resets, c.LastNoticeSeq())
			}
		})
	}
}
