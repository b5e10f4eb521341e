package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/link"
)

// The idle, room and super-group benchmarks share this: the parent starts
// worker processes (one process holds at most 20,000 files) and drives
// them by lines on stdin and stdout; each worker opens logged-in Link
// connections of member accounts from its own source address.

// workerProc is one worker process.
type workerProc struct {
	cmd *exec.Cmd
	in  *bufio.Writer
	out *bufio.Scanner
}

// startWorkers starts n worker processes of this binary: args(i) are
// worker i's arguments, cpu the CPU list taskset pins them to ("" or no
// taskset: not pinned). stop kills them.
func startWorkers(n int, cpu string, args func(i int) []string) (ws []*workerProc, stop func(), err error) {
	self, err := os.Executable()
	if err != nil {
		return nil, nil, err
	}
	stop = func() {
		for _, w := range ws {
			_ = w.cmd.Process.Kill()
			_ = w.cmd.Wait()
		}
	}
	for i := range n {
		argv := append([]string{self}, args(i)...)
		if cpu != "" {
			if _, err := exec.LookPath("taskset"); err == nil {
				argv = append([]string{"taskset", "-c", cpu}, argv...)
			}
		}
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Stderr = os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		in, err := cmd.StdinPipe()
		if err != nil {
			stop()
			return nil, nil, err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			stop()
			return nil, nil, err
		}
		if err := cmd.Start(); err != nil {
			stop()
			return nil, nil, err
		}
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		ws = append(ws, &workerProc{cmd: cmd, in: bufio.NewWriter(in), out: sc})
	}
	return ws, stop, nil
}

// send writes one line to the worker.
func (w *workerProc) send(line string) error {
	if _, err := fmt.Fprintln(w.in, line); err != nil {
		return err
	}
	return w.in.Flush()
}

// expect reads lines until one starts with prefix; a line starting with
// "error" or the end of the output fails.
func (w *workerProc) expect(prefix string) (string, error) {
	for w.out.Scan() {
		line := w.out.Text()
		if strings.HasPrefix(line, prefix) {
			return line, nil
		}
		if strings.HasPrefix(line, "error") {
			return "", fmt.Errorf("worker: %s", line)
		}
	}
	return "", fmt.Errorf("worker exited")
}

// workerFlags are the flags every worker takes.
type workerFlags struct {
	src, keyID, pubB64 *string
}

func addWorkerFlags(fs interface {
	String(name, value, usage string) *string
}) workerFlags {
	return workerFlags{
		src:    fs.String("src", "127.0.0.2", "source address"),
		keyID:  fs.String("key-id", "", "server key id"),
		pubB64: fs.String("public-key", "", "server public key"),
	}
}

// workerArgs are the flags of workerFlags for a worker of index i (source
// address 127.0.0.<2+i>).
func workerArgs(i int, key link.KeyPair) []string {
	return []string{"-src", fmt.Sprintf("127.0.0.%d", 2+i), "-key-id", key.ID, "-public-key", link.EncodeKey(key.Public)}
}

// dialer is the dialer of these flags.
func (f workerFlags) dialer(timeout time.Duration) (memberDialer, error) {
	pub, err := link.DecodeKey(*f.pubB64)
	if err != nil {
		return memberDialer{}, err
	}
	return memberDialer{src: *f.src, keyID: *f.keyID, pub: pub, timeout: timeout}, nil
}

// memberDialer opens member accounts' logged-in Link connections.
type memberDialer struct {
	src     string // source address ("": any)
	keyID   string
	pub     []byte
	timeout time.Duration // the dial, the handshake and each answer
	limits  link.Limits   // of the connections it opens
}

// memberCall is a request a member makes after its login, before its
// connection is handed over (a room's enter).
type memberCall struct {
	op  imapi.Op
	req any
}

// open dials addr, does the handshake, logs member u in and makes the
// calls. A call that an overloaded server answers with 503 or 504 (a
// crowd entering at once on a busy machine) is retried: login and the
// calls are idempotent.
func (d memberDialer) open(addr string, u int, calls ...memberCall) (*link.Conn, error) {
	nd := &net.Dialer{Timeout: d.timeout}
	if d.src != "" {
		nd.LocalAddr = &net.TCPAddr{IP: net.ParseIP(d.src)}
	}
	nc, err := nd.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), d.timeout)
	defer cancel()
	c, err := link.Client(ctx, nc, d.keyID, d.pub, d.limits)
	if err != nil {
		nc.Close()
		return nil, err
	}
	_ = nc.SetReadDeadline(time.Now().Add(d.timeout))
	login := memberCall{imapi.OpLogin, imapi.LoginReq{AppKey: benchAppKey, Account: account(u), Token: token(u),
		DeviceID: "d" + strconv.Itoa(u), DeviceType: "phone", SDKVersion: "loadgen"}}
	for i, call := range append([]memberCall{login}, calls...) {
		if err := memberRequest(c, uint32(i+1), call, u); err != nil {
			c.Close()
			return nil, err
		}
	}
	_ = nc.SetReadDeadline(time.Time{})
	return c, nil
}

// memberRequest makes one call on c with sequence seq, retrying 503 and
// 504 answers.
func memberRequest(c *link.Conn, seq uint32, call memberCall, u int) error {
	body, _ := json.Marshal(call.req)
	for attempt := 1; ; attempt++ {
		if err := c.WriteFrame(link.Frame{Op: call.op, Seq: seq, Body: body}); err != nil {
			return err
		}
		var f link.Frame
		for {
			var err error
			if f, err = c.ReadFrame(); err != nil {
				return err
			}
			if f.IsResponse() && f.Seq == seq {
				break
			}
		}
		switch {
		case f.Code == imapi.OK:
			return nil
		case (f.Code == imapi.ErrTimeout || f.Code == imapi.ErrUnavailable) && attempt < 5:
			time.Sleep(time.Duration(attempt) * time.Second)
		default:
			return fmt.Errorf("%s %s: code %d %s", call.op, account(u), f.Code, f.Body)
		}
	}
}

// openAll calls open(i) for i in [from, to) on parallel goroutines and
// returns the first error (after which no new i is taken).
func openAll(from, to, parallel int, open func(i int) error) error {
	var next atomic.Int64
	next.Store(int64(from))
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for firstErr.Load() == nil {
				i := int(next.Add(1) - 1)
				if i >= to {
					return
				}
				if err := open(i); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return err
	}
	return nil
}

// memberConns are a worker's open connections.
type memberConns struct {
	mu    sync.Mutex
	conns []*link.Conn
}

func (m *memberConns) add(c *link.Conn) {
	m.mu.Lock()
	m.conns = append(m.conns, c)
	m.mu.Unlock()
}

func (m *memberConns) len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.conns)
}

// heartbeats keeps the sessions alive (the server closes silent ones).
func (m *memberConns) heartbeats() {
	t := time.NewTicker(30 * time.Second)
	for range t.C {
		m.mu.Lock()
		cs := append([]*link.Conn(nil), m.conns...)
		m.mu.Unlock()
		for _, c := range cs {
			_ = c.WriteFrame(link.Frame{Op: imapi.OpHeartbeat, Seq: 2})
		}
	}
}

// readAll reads c's frames until it closes, handing each to on (nil:
// dropped).
func readAll(c *link.Conn, on func(link.Frame)) {
	for {
		f, err := c.ReadFrame()
		if err != nil {
			return
		}
		if on != nil {
			on(f)
		}
	}
}
