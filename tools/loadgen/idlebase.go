package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// The baselines of the idle benchmark: echo servers that hold the same
// plain TCP connections from the same workers, measured the same way.
//
//	epoll: every accepted socket goes on the server's own epoll set and
//	       nothing else is kept per connection (no goroutine, no Go
//	       object): the floor of the method, what the kernel's socket
//	       costs the process.
//	go:    net.Listener and a goroutine per connection blocked in Read,
//	       the plain Go server.

// measureEcho starts the echo server of mode pinned to serverCPU and
// measures it at levels.
func measureEcho(mode string, levels []int, workers int, serverCPU, clientCPU string, settle time.Duration) error {
	srvs, stop, err := startWorkers(1, serverCPU, func(int) []string {
		return []string{"idle-echo-server", "-mode", mode}
	})
	if err != nil {
		return err
	}
	defer stop()
	srv := srvs[0]
	line, err := srv.expect("listen ")
	if err != nil {
		return err
	}
	addr := strings.TrimPrefix(line, "listen ")
	t := idleTarget{
		figure: "baseline_" + mode + "_echo_idle", pid: srv.cmd.Process.Pid,
		gc: func() error {
			if err := srv.send("gc"); err != nil {
				return err
			}
			_, err := srv.expect("ok")
			return err
		},
		workerArgs: func(i int) []string {
			return []string{"idle-worker", "-plain", "-addr", addr, "-src", fmt.Sprintf("127.0.0.%d", 2+i)}
		},
		check: func(n int) error {
			if err := srv.send("conns"); err != nil {
				return err
			}
			l, err := srv.expect("conns ")
			if err != nil {
				return err
			}
			if got, _ := strconv.Atoi(strings.TrimPrefix(l, "conns ")); got != n {
				return fmt.Errorf("server holds %d connections, want %d", got, n)
			}
			return nil
		},
	}
	return measureIdle(t, levels, workers, clientCPU, settle)
}

// openPlain grows held to target plain TCP connections to addr from src,
// each confirmed by the echo of one byte.
func openPlain(held *[]net.Conn, addr, src string, target int) error {
	d := &net.Dialer{Timeout: 20 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	for len(*held) < target {
		c, err := d.Dial("tcp", addr)
		if err != nil {
			return err
		}
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		var b [1]byte
		if _, err := c.Write([]byte{'x'}); err != nil {
			return err
		}
		if _, err := io.ReadFull(c, b[:]); err != nil {
			return fmt.Errorf("echo: %w", err)
		}
		_ = c.SetDeadline(time.Time{})
		*held = append(*held, c)
	}
	return nil
}

// runEchoServer is an echo server driven by lines on stdin: "gc" (answers
// "ok" after a GC that returns memory to the OS) and "conns" (answers
// "conns N").
func runEchoServer(args []string) error {
	fs := flag.NewFlagSet("idle-echo-server", flag.ContinueOnError)
	mode := fs.String("mode", "epoll", "epoll or go")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var count func() int
	var addr string
	var err error
	switch *mode {
	case "epoll":
		addr, count, err = epollEcho()
	case "go":
		addr, count, err = goEcho()
	default:
		return fmt.Errorf("-mode %q", *mode)
	}
	if err != nil {
		return err
	}
	fmt.Printf("listen %s\n", addr)
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		switch sc.Text() {
		case "gc":
			debug.FreeOSMemory()
			fmt.Println("ok")
		case "conns":
			fmt.Printf("conns %d\n", count())
		}
	}
	return nil
}

func goEcho() (string, func() int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	var n atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			go func() {
				defer n.Add(-1)
				defer c.Close()
				buf := make([]byte, 512)
				for {
					k, err := c.Read(buf)
					if err != nil {
						return
					}
					if _, err := c.Write(buf[:k]); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String(), func() int { return int(n.Load()) }, nil
}

// epollEcho accepts with accept4 and serves every socket from one epoll
// loop with a shared buffer.
func epollEcho() (string, func() int, error) {
	lfd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return "", nil, err
	}
	_ = unix.SetsockoptInt(lfd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	if err := unix.Bind(lfd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return "", nil, err
	}
	if err := unix.Listen(lfd, 4096); err != nil {
		return "", nil, err
	}
	sa, err := unix.Getsockname(lfd)
	if err != nil {
		return "", nil, err
	}
	port := sa.(*unix.SockaddrInet4).Port
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return "", nil, err
	}
	var n atomic.Int64
	go func() {
		for {
			fd, _, err := unix.Accept4(lfd, unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK)
			if err != nil {
				if errors.Is(err, unix.EINTR) || errors.Is(err, unix.ECONNABORTED) {
					continue
				}
				return
			}
			ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(fd)}
			if unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, fd, &ev) != nil {
				_ = unix.Close(fd)
				continue
			}
			n.Add(1)
		}
	}()
	go func() {
		events := make([]unix.EpollEvent, 256)
		buf := make([]byte, 4096)
		for {
			k, err := unix.EpollWait(epfd, events, -1)
			if err != nil {
				if errors.Is(err, unix.EINTR) {
					continue
				}
				return
			}
			for _, ev := range events[:k] {
				fd := int(ev.Fd)
				r, err := unix.Read(fd, buf)
				if r > 0 {
					_, _ = unix.Write(fd, buf[:r])
				}
				if r == 0 || (err != nil && !errors.Is(err, unix.EAGAIN)) {
					_ = unix.Close(fd)
					n.Add(-1)
				}
			}
		}
	}()
	return "127.0.0.1:" + strconv.Itoa(port), func() int { return int(n.Load()) }, nil
}
