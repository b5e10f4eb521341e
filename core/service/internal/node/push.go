package node

import (
	"encoding/json"

	"github.com/longlink/longlink/core/imapi"

	"github.com/longlink/longlink/core/internal/buswire"
)

// Push publishes one push to every session of account. Pushes are
// best-effort: a client that misses one catches up by sync.
func (n *Node) Push(appkey, account string, op imapi.Op, body []byte, exceptSession string) {
	if account == imapi.SystemAccount {
		return
	}
	b := buswire.AppendPush(make([]byte, 0, 96+len(body)), &buswire.Push{Op: op, Body: body, ExceptSession: exceptSession})
	if err := n.NATS.Publish(buswire.UserSubject(appkey, account), b); err != nil {
		n.Metrics.PushErrors.Inc()
		n.Log.Warn("push failed", "op", op.Name(), "err", err)
		return
	}
	n.Metrics.pushes.WithLabelValues(op.Name()).Inc()
}

// PushAll sends v to every account; the sender's own session is skipped.
func (n *Node) PushAll(sess *buswire.Session, accounts []string, op imapi.Op, v any) {
	var body []byte
	var err error
	if m, ok := v.(*imapi.Message); ok {
		// Every stored message is pushed: encoded by hand (the same bytes).
		body, err = buswire.AppendMessage(make([]byte, 0, 192+len(m.Body)), m)
	} else {
		body, err = json.Marshal(v)
	}
	if err != nil {
		n.Log.Error("encode push", "op", op.Name(), "err", err)
		return
	}
	for _, a := range accounts {
		except := ""
		if a == sess.Account {
			except = sess.SessionID
		}
		n.Push(sess.AppKey, a, op, body, except)
	}
}

// PushSuper publishes one push on a super-group's subject: every gateway
// holding members fans it out.
func (n *Node) PushSuper(appkey, groupID string, op imapi.Op, v any, exceptSession string) {
	body, err := json.Marshal(v)
	if err != nil {
		n.Log.Error("encode push", "op", op.Name(), "err", err)
		return
	}
	b, _ := json.Marshal(&buswire.Push{Op: op, Body: body, ExceptSession: exceptSession})
	if err := n.NATS.Publish(buswire.SuperSubject(appkey, groupID), b); err != nil {
		n.Metrics.PushErrors.Inc()
		n.Log.Warn("super push failed", "op", op.Name(), "err", err)
		return
	}
	n.Metrics.superPushes.Inc()
}
