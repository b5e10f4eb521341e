package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/longlink/longlink/tools/wanemu/wan"
)

// ceiling measures the emulator's own limit: one TCP stream across a perfect
// link (every packet through the user-space path), against the same stream
// over loopback inside one namespace (the kernel alone) as the baseline.
func ceiling(ctx context.Context, log *slog.Logger) error {
	cfg := wan.Default()
	cfg.Name = "ceiling"
	cfg.Nodes = []wan.NodeConfig{{Name: "a"}, {Name: "b"}}
	cfg.Links = []wan.LinkConfig{{A: "a", B: "b"}}
	w, err := wan.New(cfg, wan.Deps{Logger: log})
	if err != nil {
		return err
	}
	if err := w.Start(ctx); err != nil {
		return err
	}
	defer w.Shutdown(context.WithoutCancel(ctx))
	const d = 5 * time.Second
	base, _, err := stream(w, "a", "a", "127.0.0.1:9001", d, nil)
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	emu, pps, err := stream(w, "a", "b", w.Addr("b").String()+":9002", d, func() uint64 {
		st, _ := w.Stats("a", "b")
		return st.Delivered
	})
	if err != nil {
		return fmt.Errorf("emulated link: %w", err)
	}
	fmt.Printf("RESULT wanemu_tcp_stream %.0f Mbit/s\n", emu)
	fmt.Printf("RESULT wanemu_packets_per_second %.0f packets/s\n", pps)
	fmt.Printf("RESULT namespace_loopback_tcp_stream %.0f Mbit/s\n", base)
	return nil
}

// stream sends one TCP stream from node from to addr in node to for d and
// returns its goodput and, when counter is given, the packet rate it saw.
func stream(w *wan.World, from, to, addr string, d time.Duration, counter func() uint64) (mbit, pps float64, err error) {
	var ln net.Listener
	if err := w.Do(to, func() (err error) { ln, err = net.Listen("tcp", addr); return }); err != nil {
		return 0, 0, err
	}
	defer ln.Close()
	got := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- 0
			return
		}
		defer c.Close()
		n, _ := io.Copy(io.Discard, c)
		got <- n
	}()
	var c net.Conn
	if err := w.Do(from, func() (err error) { c, err = net.DialTimeout("tcp", addr, 5*time.Second); return }); err != nil {
		return 0, 0, err
	}
	defer c.Close()
	var before uint64
	if counter != nil {
		before = counter()
	}
	start := time.Now()
	buf := make([]byte, 256<<10)
	for time.Since(start) < d {
		if _, err := c.Write(buf); err != nil {
			return 0, 0, err
		}
	}
	c.(*net.TCPConn).CloseWrite()
	n := <-got
	el := time.Since(start).Seconds()
	if counter != nil {
		pps = float64(counter()-before) / el
	}
	return float64(n*8) / el / 1e6, pps, nil
}
