package push

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Send markers make a notification reach a device once even when its send
// is queued or handled more than once: a side-work job or a push task
// redelivered after a worker crash, after a lost ack, or after JetStream's
// duplicate window (Nats-Msg-Id, 2 minutes) has passed, queues another copy
// of the same send (same id <msg_id>.<account>.<device>).
//
// Before the provider call, handleSend creates the send's key in the
// bucket <stream>_SENT with the value "claim <stream seq>"; the create
// fails when the key exists. A copy that finds another stream message's
// claim, or "done", is acked without a call (result "duplicate"); the same
// stream message coming back (its own retry, or a redelivery after its
// worker died mid-call) finds its own claim and tries again. After a final
// answer (ok, unregistered, failed) the value becomes "done". Keys expire
// after twice max_age (no send is attempted that late: tasks older than
// max_age are dropped).

func (p *Push) sentBucket() string { return p.cfg.Stream + "_SENT" }

// sentKey is the bucket key of a send: a hash, as ids hold any account
// and device characters.
func sentKey(n *Notification) string {
	h := sha256.Sum256([]byte(n.AppKey + "\x00" + n.ID))
	return hex.EncodeToString(h[:16])
}

const sentDone = "done"

// claimSend reports whether this stream message may make the provider
// call for n.
func (p *Push) claimSend(ctx context.Context, n *Notification, msg jetstream.Msg) (bool, error) {
	if n.ID == "" || p.sent == nil {
		return true, nil
	}
	var seq uint64
	if md, err := msg.Metadata(); err == nil {
		seq = md.Sequence.Stream
	}
	own := "claim " + strconv.FormatUint(seq, 10)
	key := sentKey(n)
	_, err := p.sent.Create(ctx, key, []byte(own))
	if err == nil {
		return true, nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return false, err
	}
	e, err := p.sent.Get(ctx, key)
	if err != nil {
		return false, err
	}
	return string(e.Value()) == own, nil
}

// sendDone marks n's send finished; a failure only leaves the claim (a copy
// is still skipped).
func (p *Push) sendDone(n *Notification) {
	if n.ID == "" || p.sent == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := p.sent.Put(ctx, sentKey(n), []byte(sentDone)); err != nil {
		p.log.Debug("push send marker", "err", err)
	}
}
