package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/link"
)

// The baseline of `loadgen room`: a plain TCP fan-out of the same frames to
// the same number of sockets (`loadgen room-bare-server`, one process per
// gateway). It makes -rate room messages a second itself (the JSON a
// gateway gets from the bus), batches them every -batch into one
// room.messages body built as the gateway builds it (compressed once when
// that makes it smaller), and writes that one frame, unsealed, to every
// connected socket from writer goroutines (one per CPU, as the gateways'
// room writers); a round that outlasts the interval delays the next batch,
// as the gateway's stretched interval does. No handshake, login, bus,
// services, sealing or per-member bookkeeping: what writing the frames
// costs at all.

func runBareFanout(args []string) error {
	fs := flag.NewFlagSet("room-bare-server", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "listener")
	rate := fs.Int("rate", 100, "messages per second")
	batch := fs.Duration("batch", 100*time.Millisecond, "batch interval")
	bodyBytes := fs.Int("body-bytes", 64, "text bytes per message")
	writers := fs.Int("writers", 0, "writer goroutines (0: GOMAXPROCS)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *writers <= 0 {
		*writers = runtime.GOMAXPROCS(0)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	fmt.Printf("listening %s\n", ln.Addr())
	stop := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(stop) }()
	bareFanout(ln, *rate, *batch, *bodyBytes, *writers, stop)
	return nil
}

// bareFanout serves the plain fan-out on ln until stop closes.
func bareFanout(ln net.Listener, rate int, batch time.Duration, bodyBytes, writers int, stop <-chan struct{}) {
	var (
		mu      sync.Mutex
		conns   []net.Conn
		pending [][]byte // messages' JSON since the last batch
	)
	defer func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
	}()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	go func() {
		// by schedule: a tick that comes late makes what is due
		text, _ := json.Marshal(map[string]string{"text": strings.Repeat("x", bodyBytes)})
		t := time.NewTicker(time.Second / time.Duration(min(rate, 1000)))
		defer t.Stop()
		start, seq := time.Now(), int64(0)
		for {
			var now time.Time
			select {
			case <-stop:
				return
			case now = <-t.C:
			}
			for due := int64(now.Sub(start).Seconds() * float64(rate)); seq < due; {
				seq++
				m, _ := json.Marshal(imapi.RoomMessage{RoomID: benchRoom, MsgID: "m" + strconv.FormatInt(seq, 10), Seq: seq,
					From: "sender", ClientMsgID: "c" + strconv.FormatInt(seq, 10), Type: "text", Body: text, Time: now.UnixMilli()})
				mu.Lock()
				pending = append(pending, m)
				mu.Unlock()
			}
		}
	}()
	tick := time.NewTicker(batch)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		mu.Lock()
		msgs, cs := pending, conns
		pending = nil
		mu.Unlock()
		if len(msgs) == 0 || len(cs) == 0 {
			continue
		}
		frame := plainFrame(roomBatchFrame(benchRoom, msgs))
		dead := make([]bool, len(cs))
		var wg sync.WaitGroup
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < len(cs); i += writers {
					_ = cs[i].SetWriteDeadline(time.Now().Add(10 * time.Second))
					if _, err := cs[i].Write(frame); err != nil {
						dead[i] = true
					}
				}
			}()
		}
		wg.Wait()
		mu.Lock()
		live := conns[:0]
		for i, c := range conns {
			if i < len(dead) && dead[i] {
				_ = c.Close()
				continue
			}
			live = append(live, c)
		}
		conns = live
		mu.Unlock()
	}
}

// roomBatchFrame is the room.messages push a gateway makes of these
// messages' JSON: one body, compressed when that makes it smaller.
func roomBatchFrame(roomID string, msgs [][]byte) link.Frame {
	body := append([]byte(`{"room_id":"`), roomID...)
	body = append(body, `","messages":[`...)
	for i, m := range msgs {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, m...)
	}
	body = append(body, "]}"...)
	f := link.Frame{Op: imapi.OpRoomMessages, Flags: link.FlagPush, Body: body}
	if len(body) > link.DefaultCompressThreshold {
		if z := link.Deflate(body); len(z) < len(body) {
			f.Body, f.Flags = z, link.FlagPush|link.FlagCompressed
		}
	}
	return f
}

// plainFrame is f as an unsealed Link connection (link.NewPlain) carries
// it: the length, the 10-byte header, the body as is.
func plainFrame(f link.Frame) []byte {
	b := make([]byte, 0, 4+link.HeaderSize+len(f.Body))
	b = binary.BigEndian.AppendUint32(b, uint32(link.HeaderSize+len(f.Body)))
	b = append(b, link.Version, f.Flags, f.Op.Service, f.Op.Command)
	b = binary.BigEndian.AppendUint32(b, f.Seq)
	b = binary.BigEndian.AppendUint16(b, uint16(f.Code))
	return append(b, f.Body...)
}

// startBareFanout starts one room-bare-server process and returns its
// address.
func startBareFanout(rate int, batch time.Duration, bodyBytes int) (*exec.Cmd, string, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, "", err
	}
	cmd := exec.Command(self, "room-bare-server", "-rate", strconv.Itoa(rate), "-batch", batch.String(), "-body-bytes", strconv.Itoa(bodyBytes))
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if _, err := cmd.StdinPipe(); err != nil {
		return nil, "", err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", err
	}
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening ")
	if err != nil || !ok {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, "", fmt.Errorf("room-bare-server: %q %v", line, err)
	}
	return cmd, addr, nil
}
