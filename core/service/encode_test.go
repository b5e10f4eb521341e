package service

import (
	"encoding/json"
	"testing"

	"github.com/longlink/longlink/core/imapi"
)

// The hand-written encoders of the send hot path must produce exactly what
// encoding/json produces for the same values.
func TestAppendBusPushMatchesJSON(t *testing.T) {
	msg, err := json.Marshal(&imapi.Message{MsgID: "m1", ConvID: "p2p:a:b", From: "a", To: "b", Seq: 7,
		ClientMsgID: "c1", Type: "text", Body: json.RawMessage(`{"text":"hi \u003c\u0026 ü"}`), Time: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		op     imapi.Op
		body   []byte
		except string
	}{
		{imapi.OpPush, msg, ""},
		{imapi.OpPush, msg, "sess-0123456789abcdef"},
		{imapi.OpRecalled, []byte(`{"conv_id":"x"}`), "needs \"escaping\" <&> \x01 ü"},
		{imapi.OpReceipt, nil, "s"},
		{imapi.Op{Service: 255, Command: 0}, []byte(`[]`), ""},
	} {
		want, err := json.Marshal(&imapi.BusPush{Op: tc.op, Body: tc.body, ExceptSession: tc.except})
		if err != nil {
			t.Fatal(err)
		}
		if got := appendBusPush(nil, tc.op, tc.body, tc.except); string(got) != string(want) {
			t.Errorf("appendBusPush(%v, %q, %q)\n got %s\nwant %s", tc.op, tc.body, tc.except, got, want)
		}
	}
}

func TestAppendOKReplyMatchesJSON(t *testing.T) {
	for _, body := range [][]byte{nil, []byte(`{"msg_id":"m","seq":3}`), []byte(`[1,2]`)} {
		want, err := json.Marshal(&imapi.BusReply{Body: body})
		if err != nil {
			t.Fatal(err)
		}
		if got := appendOKReply(nil, body); string(got) != string(want) {
			t.Errorf("appendOKReply(%q)\n got %s\nwant %s", body, got, want)
		}
	}
}
