package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/link"
	"github.com/longlink/longlink/core/sdk"
)

// runSDKClients runs Go SDK clients for another benchmark (core/e2e's
// two-site failover), so that thousands of clients run in processes of
// their own, pinned away from the servers, instead of in the benchmark's
// process. The clients come on stdin, one a line, ended by "start":
//
//	c <account> <token> <device id> <address>[,<address>…]
//
// and it reports on stdout:
//
//	up <connected> <failed>      once every client's first login ended (at most 32 in progress)
//	s <i> 1 <unix ns>            client i (its line's index) connected and logged in
//	s <i> 0 <unix ns> <why>      client i lost its session or failed to log in again
//
// why is the refusal's code ("service_unavailable", "timeout", …) when a
// server answered, else "net". It runs until its stdin ends.
func runSDKClients(args []string) error {
	fs := flag.NewFlagSet("sdk-clients", flag.ContinueOnError)
	keyID := fs.String("key-id", "", "server key id")
	pubB64 := fs.String("public-key", "", "server public key")
	appKey := fs.String("app-key", "", "appkey")
	backoffMin := fs.Duration("backoff-min", 0, "BackoffMin (0: the SDK's default)")
	backoffMax := fs.Duration("backoff-max", 0, "BackoffMax (0: the SDK's default)")
	firstTimeout := fs.Duration("first-timeout", 2*time.Minute, "how long the first logins may take")
	if err := fs.Parse(args); err != nil {
		return err
	}
	pub, err := link.DecodeKey(*pubB64)
	if err != nil {
		return err
	}
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 64<<10), 1<<20)
	var cfgs []sdk.Config
	for in.Scan() {
		f := strings.Fields(in.Text())
		if len(f) == 1 && f[0] == "start" {
			break
		}
		if len(f) != 5 || f[0] != "c" {
			return fmt.Errorf("stdin: want 'c account token device addresses' or 'start', got %q", in.Text())
		}
		cfgs = append(cfgs, sdk.Config{
			Addresses: strings.Split(f[4], ","), ServerKeys: map[string][]byte{*keyID: pub},
			AppKey: *appKey, Account: f[1], Token: f[2], DeviceID: f[3], DeviceType: "phone",
			BackoffMin: *backoffMin, BackoffMax: *backoffMax,
		})
	}
	out := newLineWriter(os.Stdout)
	defer out.close()
	clients := make([]*sdk.Client, len(cfgs))
	marks := make([]*upMark, len(cfgs))
	first := make(chan bool, len(cfgs))
	slots := make(chan struct{}, 32)
	for i, cfg := range cfgs {
		c, err := sdk.New(cfg)
		if err != nil {
			return err
		}
		clients[i] = c
		m := &upMark{}
		marks[i] = m
		slots <- struct{}{}
		go func() {
			reported := false
			report := func(up bool) {
				if !reported {
					reported = true
					<-slots
					first <- up
				}
			}
			for ev := range c.Events() {
				if ev.Kind != sdk.EventState {
					continue
				}
				switch ev.State {
				case sdk.StateConnected:
					m.set(out, i, true, "")
					report(true)
				case sdk.StateDisconnected, sdk.StateStopped:
					m.set(out, i, false, why(ev.Err))
					if ev.State == sdk.StateStopped {
						report(false)
					}
				}
			}
		}()
		c.Start()
	}
	// The SDK drops events an application reads too slowly (a worker's
	// thousand clients reconnecting at once): the states are checked
	// every 100 ms too, so that a dropped "connected" does not leave a
	// client down in the report.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			for i, c := range clients {
				marks[i].check(out, i, c)
			}
		}
	}()
	ok := 0
	deadline := time.After(*firstTimeout)
wait:
	for range clients {
		select {
		case up := <-first:
			if up {
				ok++
			}
		case <-deadline:
			break wait
		}
	}
	out.printf("up %d %d", ok, len(clients)-ok)
	out.flush()
	for in.Scan() {
	}
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.Close()
		}()
	}
	wg.Wait()
	return nil
}

// upMark is what was last reported of a client: a line is printed only
// when it changes (the event and the periodic check may both see it).
type upMark struct {
	mu    sync.Mutex
	known bool
	up    bool
}

func (m *upMark) set(out *lineWriter, i int, up bool, why string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.setLocked(out, i, up, why)
}

// check reports c's state now if it is not what was reported last. The
// state is read under the mark's lock, so that a reading cannot be
// printed after a later event's line.
func (m *upMark) check(out *lineWriter, i int, c *sdk.Client) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.setLocked(out, i, c.State() == sdk.StateConnected, "-")
}

func (m *upMark) setLocked(out *lineWriter, i int, up bool, why string) {
	if m.known && m.up == up && (up || why == "-") {
		return
	}
	if !m.known && !up && why == "-" {
		return // not connected yet: the first login is under way
	}
	m.known, m.up = true, up
	if up {
		out.printf("s %d 1 %d", i, time.Now().UnixNano())
		return
	}
	out.printf("s %d 0 %d %s", i, time.Now().UnixNano(), why)
}

// why names the reason of a state change for the report: a refusal's code,
// else "net" (a connection that failed or broke).
func why(err error) string {
	var ie *imapi.Error
	switch {
	case errors.As(err, &ie):
		return strings.ReplaceAll(ie.Code.String(), " ", "_")
	case err == nil:
		return "-"
	}
	return "net"
}

// lineWriter prints lines from many goroutines, buffered and flushed every
// 50 ms: the times in the lines are taken when the events happen, so the
// flush delay does not move them.
type lineWriter struct {
	mu   sync.Mutex
	w    *bufio.Writer
	stop chan struct{}
	done chan struct{}
}

func newLineWriter(f *os.File) *lineWriter {
	l := &lineWriter{w: bufio.NewWriterSize(f, 64<<10), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				l.flush()
			case <-l.stop:
				l.flush()
				return
			}
		}
	}()
	return l
}

func (l *lineWriter) printf(format string, args ...any) {
	l.mu.Lock()
	fmt.Fprintf(l.w, format+"\n", args...)
	l.mu.Unlock()
}

func (l *lineWriter) flush() {
	l.mu.Lock()
	_ = l.w.Flush()
	l.mu.Unlock()
}

func (l *lineWriter) close() {
	close(l.stop)
	<-l.done
}
