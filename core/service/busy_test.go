package service_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/longlink/longlink/core/imapi"

	"github.com/longlink/longlink/core/internal/buswire"
	"github.com/longlink/longlink/core/service/session"
	"github.com/longlink/longlink/core/store"
)

// sheddingStore refuses every append the way an overloaded store does.
type sheddingStore struct{ store.Store }

func (sheddingStore) AppendMessages(context.Context, []*store.Append) ([]store.AppendResult, error) {
	return nil, &store.BusyError{RetryAfter: 37 * time.Millisecond}
}

// TestSendBusyCarriesRetryAfter: a send the store sheds is answered with the
// retryable 503 "busy" and, as the error body, the store's hint for the
// resend in milliseconds (what the SDK paces its resends by).
func TestSendBusyCarriesRetryAfter(t *testing.T) {
	e := newEnvWrapped(t, store.DriverSQLite, func(st store.Store) store.Store { return sheddingStore{st} })
	alice := e.login("alice", "phone")
	body, _ := json.Marshal(&buswire.Request{Session: alice.sess, Body: []byte(`{"conv_type":1,"to":"bob","client_msg_id":"c1","type":"text","body":{"text":"hi"}}`)})
	m, err := e.nc.Request(buswire.ServiceSubject(buswire.DefaultCluster, imapi.OpSend), body, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var rep buswire.Reply
	if err := buswire.DecodeReply(m.Data, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Code != imapi.ErrUnavailable || rep.Message != "busy" {
		t.Fatalf("reply %d %q, want 503 busy", rep.Code, rep.Message)
	}
	var ie imapi.Error
	if err := json.Unmarshal(rep.Body, &ie); err != nil {
		t.Fatalf("error body %q: %v", rep.Body, err)
	}
	if ie.Code != imapi.ErrUnavailable || ie.RetryAfterMs != 37 {
		t.Fatalf("error body %+v, want code 503 and retry_after_ms 37", ie)
	}
}

// unreachableStore fails, while broken is set, what a database that cannot
// be reached fails (a failover under way): the store's hint is when it
// tries again.
type unreachableStore struct {
	store.Store
	broken *atomic.Bool
}

func unreachable() error {
	return &store.UnavailableError{RetryAfter: 200 * time.Millisecond, Err: errors.New("no writable server")}
}

func (u unreachableStore) CheckToken(ctx context.Context, appkey, account string, hash []byte, now time.Time) (bool, error) {
	if u.broken.Load() {
		return false, fmt.Errorf("store: check token: %w", unreachable())
	}
	return u.Store.CheckToken(ctx, appkey, account, hash, now)
}

func (u unreachableStore) AppendMessages(ctx context.Context, as []*store.Append) ([]store.AppendResult, error) {
	if u.broken.Load() {
		return nil, fmt.Errorf("store: append: %w", unreachable())
	}
	return u.Store.AppendMessages(ctx, as)
}

// TestStoreUnreachableCarriesRetryAfter: while the database cannot be
// reached, a login and a send are answered 503 "store unavailable" with a
// retry hint, not 500: the SDK then comes back after about the hint
// instead of backing off as from a broken server. A login's hint is
// spread over [session.LoginRetry, twice it) (a new connection and
// handshake each time), a send's is the store's own.
func TestStoreUnreachableCarriesRetryAfter(t *testing.T) {
	var broken atomic.Bool
	e := newEnvWrapped(t, store.DriverSQLite, func(st store.Store) store.Store {
		return unreachableStore{Store: st, broken: &broken}
	})
	alice := e.login("alice", "phone")
	broken.Store(true)
	for _, tc := range []struct {
		op           imapi.Op
		sess         buswire.Session
		body         string
		minMs, maxMs int64
	}{
		{imapi.OpLogin, buswire.Session{}, fmt.Sprintf(`{"appkey":%q,"account":"alice","token":%q}`, appKey, e.tokens["alice"]),
			session.LoginRetry.Milliseconds(), 2 * session.LoginRetry.Milliseconds()},
		{imapi.OpSend, alice.sess, `{"conv_type":1,"to":"bob","client_msg_id":"c1","type":"text","body":{"text":"hi"}}`, 200, 201},
	} {
		body, _ := json.Marshal(&buswire.Request{Session: tc.sess, Body: []byte(tc.body)})
		m, err := e.nc.Request(buswire.ServiceSubject(buswire.DefaultCluster, tc.op), body, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var rep buswire.Reply
		if err := buswire.DecodeReply(m.Data, &rep); err != nil {
			t.Fatal(err)
		}
		var ie imapi.Error
		if rep.Code != imapi.ErrUnavailable || rep.Message != "store unavailable" || json.Unmarshal(rep.Body, &ie) != nil ||
			ie.RetryAfterMs < tc.minMs || ie.RetryAfterMs >= tc.maxMs {
			t.Fatalf("%s: reply %d %q %s, want 503 store unavailable with retry_after_ms in [%d, %d)", tc.op, rep.Code, rep.Message, rep.Body, tc.minMs, tc.maxMs)
		}
	}
}
