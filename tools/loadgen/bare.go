package main

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	_ "modernc.org/sqlite"
)

// The baseline of `loadgen messages`: the same path built from bare parts
// (`loadgen bare-messages-server`). A client's send crosses plain TCP
// (length-prefixed frames, no encryption, no JSON) into a "gateway" that
// publishes it as a NATS request on an embedded nats-server; a "service"
// on its own connection queues it for a single SQLite writer that commits
// whole batches (WAL, synchronous=FULL: one fsync acks the batch, a unique
// index dedupes); after the commit the service answers the request and
// publishes the message on the receiver's subject, which the gateway writes
// to the receiver's socket. That is what Longlink's durable 1:1 path does
// at least (two NATS crossings, a group commit), without its protocol,
// crypto, envelopes, checks and bookkeeping.
//
// Frames: u32 length, then a type byte and its fields (big-endian).
//
//	client → server  'L' u32 account                    log in
//	                 'S' u32 to, u64 id, body            send
//	server → client  'A' u64 id                          stored
//	                 'M' body                            a message for it
const (
	bareLogin = 'L'
	bareSend  = 'S'
	bareAck   = 'A'
	bareMsg   = 'M'
)

// bareMaxBatch is the most sends one commit takes (the store's MaxBatch).
const bareMaxBatch = 512

// bareMaxChunk is the most rows of one INSERT statement.
const bareMaxChunk = 256

func runBareServer(args []string) error {
	fs := flag.NewFlagSet("bare-messages-server", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "client listener")
	dbPath := fs.String("db", "", "SQLite database file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ns, err := natsserver.NewServer(&natsserver.Options{DontListen: true, NoLog: true, NoSigs: true})
	if err != nil {
		return err
	}
	ns.Start()
	defer ns.Shutdown()
	if !ns.ReadyForConnections(10 * time.Second) {
		return errors.New("nats-server not ready")
	}
	gw, err := nats.Connect("", nats.InProcessServer(ns))
	if err != nil {
		return err
	}
	svc, err := nats.Connect("", nats.InProcessServer(ns))
	if err != nil {
		return err
	}
	st, err := openBareStore(*dbPath)
	if err != nil {
		return err
	}
	defer st.db.Close()
	queue := make(chan *nats.Msg, 64*1024)
	if _, err := svc.ChanQueueSubscribe("svc.send", "svc", queue); err != nil {
		return err
	}
	go st.commitLoop(svc, queue)
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	fmt.Printf("listening %s\n", ln.Addr())
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serveBare(gw, c)
		}
	}()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	<-sig
	return nil
}

// bareStore is the service's single SQLite writer.
type bareStore struct {
	db    *sql.DB
	stmts map[int]*sql.Stmt // multi-row inserts by row count
}

func openBareStore(path string) (*bareStore, error) {
	q := url.Values{"_txlock": {"immediate"}}
	for _, p := range []string{"journal_mode(WAL)", "synchronous(FULL)", "busy_timeout(5000)", "cache_size(-32000)"} {
		q.Add("_pragma", p)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(`CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY, sender INTEGER NOT NULL,
		receiver INTEGER NOT NULL, cid INTEGER NOT NULL, body BLOB NOT NULL, UNIQUE (sender, cid))`); err != nil {
		return nil, err
	}
	// Prepared at open: preparing on the one connection while a
	// transaction holds it would wait forever.
	s := &bareStore{db: db, stmts: map[int]*sql.Stmt{}}
	for n := 1; n <= bareMaxChunk; n *= 2 {
		st, err := db.Prepare("INSERT OR IGNORE INTO messages (sender, receiver, cid, body) VALUES " +
			strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?), ", n), ", "))
		if err != nil {
			return nil, err
		}
		s.stmts[n] = st
	}
	return s, nil
}

// commitLoop takes what is queued (up to bareMaxBatch) into one
// transaction, then answers each request and publishes each message.
func (s *bareStore) commitLoop(nc *nats.Conn, queue chan *nats.Msg) {
	batch := make([]*nats.Msg, 0, bareMaxBatch)
	for m := range queue {
		batch = append(batch[:0], m)
	fill:
		for len(batch) < bareMaxBatch {
			select {
			case m := <-queue:
				batch = append(batch, m)
			default:
				break fill
			}
		}
		if err := s.commit(batch); err != nil {
			fmt.Fprintln(os.Stderr, "bare store:", err)
			continue
		}
		for _, m := range batch {
			// sender u32, to u32, id u64, body
			to := binary.BigEndian.Uint32(m.Data[4:])
			_ = nc.Publish(m.Reply, m.Data[8:16])
			_ = nc.Publish("u."+strconv.FormatUint(uint64(to), 10), m.Data[16:])
		}
	}
}

func (s *bareStore) commit(batch []*nats.Msg) error {
	tx, err := s.db.BeginTx(context.Background(), nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	for lo := 0; lo < len(batch); {
		// Power-of-two chunks, so a few statements serve every size.
		n := 1
		for n*2 <= len(batch)-lo && n*2 <= bareMaxChunk {
			n *= 2
		}
		st := s.stmts[n]
		args := make([]any, 0, 4*n)
		for _, m := range batch[lo : lo+n] {
			d := m.Data
			args = append(args, int64(binary.BigEndian.Uint32(d)), int64(binary.BigEndian.Uint32(d[4:])),
				int64(binary.BigEndian.Uint64(d[8:])), d[16:])
		}
		if _, err := tx.Stmt(st).Exec(args...); err != nil {
			return err
		}
		lo += n
	}
	return tx.Commit()
}

// serveBare is the gateway side of one client connection.
func serveBare(nc *nats.Conn, c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	var wmu sync.Mutex
	w := bufio.NewWriter(c)
	write := func(typ byte, payload []byte) {
		var hdr [5]byte
		binary.BigEndian.PutUint32(hdr[:], uint32(1+len(payload)))
		hdr[4] = typ
		wmu.Lock()
		_, _ = w.Write(hdr[:])
		_, _ = w.Write(payload)
		_ = w.Flush()
		wmu.Unlock()
	}
	f, err := readBareFrame(r)
	if err != nil || len(f) != 5 || f[0] != bareLogin {
		return
	}
	me := binary.BigEndian.Uint32(f[1:])
	push, err := nc.Subscribe("u."+strconv.FormatUint(uint64(me), 10), func(m *nats.Msg) { write(bareMsg, m.Data) })
	if err != nil {
		return
	}
	defer func() { _ = push.Unsubscribe() }()
	inbox := nc.NewRespInbox()
	acks, err := nc.Subscribe(inbox, func(m *nats.Msg) { write(bareAck, m.Data) })
	if err != nil {
		return
	}
	defer func() { _ = acks.Unsubscribe() }()
	for {
		f, err := readBareFrame(r)
		if err != nil {
			return
		}
		if len(f) < 13 || f[0] != bareSend {
			return
		}
		req := make([]byte, 4+len(f)-1)
		binary.BigEndian.PutUint32(req, me)
		copy(req[4:], f[1:])
		if err := nc.PublishRequest("svc.send", inbox, req); err != nil {
			return
		}
	}
}

func readBareFrame(r *bufio.Reader) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 || n > 1<<20 {
		return nil, fmt.Errorf("frame of %d bytes", n)
	}
	b := make([]byte, n)
	_, err := io.ReadFull(r, b)
	return b, err
}
