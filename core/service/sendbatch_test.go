package service_test

import (
	"encoding/json"
	"testing"

	"github.com/longlink/longlink/core/imapi"

	"github.com/longlink/longlink/core/internal/buswire"
	"github.com/longlink/longlink/core/store"
	"github.com/longlink/longlink/core/store/storetest"
)

func batchOf(t *testing.T, sends ...imapi.SendReq) buswire.SendBatchReq {
	t.Helper()
	var br buswire.SendBatchReq
	for _, s := range sends {
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		br.Sends = append(br.Sends, b)
	}
	return br
}

func text(to, cmid string) imapi.SendReq {
	return imapi.SendReq{ConvType: imapi.ConvP2P, To: to, ClientMsgID: cmid, Type: "text", Body: json.RawMessage(`{"text":"hi"}`)}
}

// TestSendBatch: a gateway's send batch is answered send by send, in order:
// the stored ones acked with consecutive sequences in batch order, each
// refusal for itself (a bad send, an unknown recipient) without holding
// the others back; sent again, the batch is answered as duplicates. A
// store that cannot take the batch refuses every send with its retryable
// code and hint, so the gateway sends the whole batch again.
func TestSendBatch(t *testing.T) {
	for _, driver := range storetest.Drivers {
		t.Run(driver, func(t *testing.T) {
			e := newEnv(t, driver)
			alice := e.login("alice", "phone")
			br := batchOf(t, text("bob", "b1"), imapi.SendReq{ConvType: imapi.ConvP2P, To: "bob", ClientMsgID: "b2"},
				text("nobody", "b3"), text("bob", "b4"), text("carol", "b5"), text("bob", "b6"))
			var resp buswire.SendBatchResp
			if code := alice.call(buswire.OpSendBatch, br, &resp); code != imapi.OK {
				t.Fatalf("batch: code %d", code)
			}
			want := []imapi.Code{imapi.OK, imapi.ErrBadRequest, imapi.ErrNotFound, imapi.OK, imapi.OK, imapi.OK}
			if len(resp.Results) != len(want) {
				t.Fatalf("%d results, want %d", len(resp.Results), len(want))
			}
			for i, r := range resp.Results {
				if r.Code != want[i] || (r.Code == imapi.OK) != (r.Ack != nil) {
					t.Fatalf("result %d: %+v, want code %d", i, r, want[i])
				}
			}
			if s1, s4, s6 := resp.Results[0].Ack.Seq, resp.Results[3].Ack.Seq, resp.Results[5].Ack.Seq; s4 != s1+1 || s6 != s4+1 {
				t.Fatalf("bob's conversation got seqs %d, %d, %d: not in batch order", s1, s4, s6)
			}
			var again buswire.SendBatchResp
			if code := alice.call(buswire.OpSendBatch, br, &again); code != imapi.OK || again.Results[5].Ack.Seq != resp.Results[5].Ack.Seq {
				t.Fatalf("resent batch: code %d, %+v", code, again.Results)
			}
		})
	}
	t.Run("busy store", func(t *testing.T) {
		e := newEnvWrapped(t, store.DriverSQLite, func(st store.Store) store.Store { return sheddingStore{st} })
		alice := e.login("alice", "phone")
		var resp buswire.SendBatchResp
		if code := alice.call(buswire.OpSendBatch, batchOf(t, text("bob", "c1"), text("bob", "c2")), &resp); code != imapi.OK {
			t.Fatalf("batch: code %d", code)
		}
		for i, r := range resp.Results {
			if r.Code != imapi.ErrUnavailable || r.RetryAfterMs != 37 {
				t.Fatalf("result %d: %+v, want 503 with retry_after_ms 37", i, r)
			}
		}
	})
}
