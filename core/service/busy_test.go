package service_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/longlink/longlink/core/imapi"

	"github.com/longlink/longlink/core/internal/buswire"
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
