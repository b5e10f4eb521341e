package main

import (
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	pionturn "github.com/pion/turn/v5"

	"github.com/longlink/longlink/pkg/config"
	"github.com/longlink/longlink/pkg/turncred"
)

// hold makes n allocations on server (64 at a time) from sockets on local,
// prints "held N" and keeps them until killed. Allocations live 10 minutes,
// longer than a run. Each holder uses its own loopback address so that the
// clients' ports do not eat into the ephemeral range the relays bind from.
func hold(args []string) error {
	if len(args) != 5 {
		return fmt.Errorf("hold SERVER SECRET N ACCOUNT LOCALIP")
	}
	server, secret, account, local := args[0], args[1], args[3], args[4]
	n, err := strconv.Atoi(args[2])
	if err != nil {
		return err
	}
	kr, err := turncred.NewKeyring([]turncred.Secret{{ID: "bench", Value: config.NewSecret(secret)}})
	if err != nil {
		return err
	}
	cred, err := kr.Issue("bench", account, time.Hour, time.Now())
	if err != nil {
		return err
	}
	var held atomic.Int64
	var keep []net.PacketConn
	var mu sync.Mutex
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			conn, err := net.ListenPacket("udp4", net.JoinHostPort(local, "0"))
			if err != nil {
				return
			}
			cl, err := pionturn.NewClient(&pionturn.ClientConfig{TURNServerAddr: server, STUNServerAddr: server,
				Username: cred.Username, Password: cred.Password, Realm: "longlink", Conn: conn})
			if err != nil {
				_ = conn.Close()
				return
			}
			if err := cl.Listen(); err != nil {
				_ = conn.Close()
				return
			}
			relay, err := cl.Allocate()
			if err != nil {
				cl.Close()
				_ = conn.Close()
				return
			}
			held.Add(1)
			mu.Lock()
			keep = append(keep, relay)
			mu.Unlock()
		}()
	}
	wg.Wait()
	fmt.Printf("held %d\n", held.Load())
	select {}
}
