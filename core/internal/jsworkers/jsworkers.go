// Package jsworkers runs a durable JetStream consumer's messages on a fixed
// number of workers: the super-group side work (core/service/msg) and the
// webhook deliveries (core/webhook) start and stop their workers alike.
package jsworkers

import (
	"context"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
)

// Pool hands the messages of one consumer to its workers, one message at a
// time per worker.
type Pool struct {
	cc     jetstream.ConsumeContext
	quit   chan struct{}
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Start starts workers goroutines running handle for each message of cons,
// with at most pull messages pulled ahead. handle gets a context that Stop
// cancels when its own ends first; it acknowledges the message itself. A
// message not handed to a worker before Stop stays unacknowledged and is
// redelivered after the consumer's ack wait. consumeErr gets the errors the
// consumer reports while it runs (missed heartbeats and the like).
func Start(cons jetstream.Consumer, workers, pull int, handle func(context.Context, jetstream.Msg), consumeErr func(error)) (*Pool, error) {
	wctx, cancel := context.WithCancel(context.Background())
	p := &Pool{quit: make(chan struct{}), cancel: cancel}
	work := make(chan jetstream.Msg)
	for range workers {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for {
				select {
				case m := <-work:
					handle(wctx, m)
				case <-p.quit:
					return
				}
			}
		}()
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		select {
		case work <- m:
		case <-p.quit:
		}
	}, jetstream.PullMaxMessages(pull), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		consumeErr(err)
	}))
	if err != nil {
		close(p.quit)
		cancel()
		p.wg.Wait()
		return nil, err
	}
	p.cc = cc
	return p, nil
}

// Stop stops pulling, lets the workers finish the messages in hand and
// waits for them. When ctx ends first it stops the consumer at once,
// cancels the handlers' context, waits for them to return and reports
// ctx's error; the messages they did not acknowledge are redelivered.
func (p *Pool) Stop(ctx context.Context) error {
	p.cc.Drain()
	select {
	case <-p.cc.Closed():
	case <-ctx.Done():
		p.cc.Stop()
	}
	close(p.quit)
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	defer p.cancel()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		p.cancel()
		<-done
		return ctx.Err()
	}
}
