package buswire

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/longlink/longlink/core/imapi"
)

var sendSeeds = []string{
	`{"sends":[{"conv_type":1,"to":"u2","client_msg_id":"c1","type":"text","body":{"t":1}},{"conv_type":1,"to":"u3","client_msg_id":"c2","body":"x"}]}`,
	`{"sends":[]}`,
	`{"sends":null}`,
	`{"sends":[null,1]}`,
	`{"sends":[1],"sends":[2,3]}`,
	`{"Sends":[1]}`,
	` { "sends" : [ {"a" : "]"} , [1,[2]] ] } `,
	`{"results":[{"ack":{"msg_id":"m1","conv_id":"p2p:a:b","seq":3,"time":1765130000123}},{"code":503,"message":"busy","retry_after_ms":40}]}`,
	`{"results":[{}]}`,
	`{"results":[]}`,
	`{"results":null}`,
	`{"results":[{"ack":null}]}`,
	`{"results":[{"ack":{"seq":1},"ack":{"msg_id":"x"}}]}`,
	`{"results":[{"code":1,"code":2}]}`,
	`{"results":[{"ack":{"seq":-1,"time":1e3}}]}`,
	`{"results":[{"code":70000}]}`,
	`{"results":[{"message":"caf\u00e9","retry_after_ms":99999999999999999999}]}`,
	`{"results":[{"ack":{"msg_id":"m","MSG_ID":"n"}}]}`,
	`{"conv_type":1,"to":"u2","client_msg_id":"c1","type":"text","body":{"text":"hi"},"mentions":["a","b"]}`,
	`[1,2]`,
	`{"results":[{"ack":{"msg_id":"m"}}`,
	`{"sends":[`,
}

func decodeBodies(t *testing.T, data []byte) {
	t.Helper()
	if !json.Valid(data) {
		// Not what an envelope's decoder lets through; decoding it must
		// not panic, whatever it returns.
		_ = DecodeSendBatchReq(data, new(SendBatchReq))
		_ = DecodeValidSendReq(data, new(imapi.SendReq))
		_ = DecodeSendBatchResp(data, new(SendBatchResp))
		return
	}
	sameDecode(t, data, DecodeSendBatchReq)
	sameDecode(t, data, DecodeValidSendReq)
	sameDecode(t, data, DecodeSendBatchResp)
}

// FuzzSendBodies: on valid JSON the send bodies' decoders give what
// encoding/json gives; on anything else they do not panic.
func FuzzSendBodies(f *testing.F) {
	for _, s := range append(sendSeeds, busSeeds...) {
		f.Add([]byte(s))
	}
	f.Fuzz(decodeBodies)
}

func TestSendBodySeeds(t *testing.T) {
	for _, s := range append(sendSeeds, busSeeds...) {
		decodeBodies(t, []byte(s))
	}
}

// The sends of a batch alias the request instead of copying it.
func TestSendBatchReqAliases(t *testing.T) {
	data := []byte(sendSeeds[0])
	var r SendBatchReq
	if err := DecodeSendBatchReq(data, &r); err != nil || len(r.Sends) != 2 {
		t.Fatalf("%+v, %v", r, err)
	}
	if &r.Sends[0][0] != &data[10] {
		t.Fatalf("first send %q is a copy", r.Sends[0])
	}
}

// The encoders write byte for byte what json.Marshal writes.
func TestSendEncodersMatchMarshal(t *testing.T) {
	strs := []string{"", "m1", "<a href=\"x\">&</a>", "line\nbreak\ttab", "\u2028\x01\xff", "café"}
	for _, s := range strs {
		ack := imapi.SendAck{MsgID: s, ConvID: "p2p:" + s, Seq: 7, Time: -3}
		if got, want := AppendSendAck(nil, &ack), marshal(t, &ack); !bytes.Equal(got, want) {
			t.Fatalf("ack %q:\n AppendSendAck %s\n json.Marshal  %s", s, got, want)
		}
		for _, r := range []SendBatchResp{
			{},
			{Results: []SendResult{}},
			{Results: []SendResult{{Ack: &ack}, {Code: imapi.ErrUnavailable, Message: s, RetryAfterMs: 40}, {}, {Code: imapi.ErrBlocked}}},
		} {
			if got, want := AppendSendBatchResp(nil, &r), marshal(t, &r); !bytes.Equal(got, want) {
				t.Fatalf("resp %+v:\n AppendSendBatchResp %s\n json.Marshal        %s", r, got, want)
			}
		}
	}
	bodies := []string{
		`{"t":1765130000123}`, `"plain"`, `{"text":"hello world"}`, `{ "text": "spaced" }`, "[1,\n2]",
		`{"html":"<b>&</b>"}`, `{"q":"a\"b\\"}`, `{"s":"\u2028"}`, "{\"s\":\"\u2028 raw\"}", `{"é":"ü"}`, `null`,
		"{\"bad\":\"\xff\"}", `{"a":[{"b":{}}],"c":-1.5e3,"d":true}`,
	}
	for i, b := range bodies {
		m := imapi.Message{MsgID: "m", ConvID: "p2p:a:b", ConvType: imapi.ConvP2P, From: strs[i%len(strs)], To: "b",
			Seq: int64(i), ClientMsgID: "c", Type: "text", Body: json.RawMessage(b), Time: 1765130000123}
		if i%2 == 0 {
			m.FromDevice, m.Mentions, m.Recalled = "phone", []string{"a", strs[i%len(strs)]}, true
		}
		if i%3 == 0 {
			m.Mentions = []string{}
		}
		got, err := AppendMessage(nil, &m)
		if err != nil {
			t.Fatalf("body %q: %v", b, err)
		}
		if want := marshal(t, &m); !bytes.Equal(got, want) {
			t.Fatalf("body %q:\n AppendMessage %s\n json.Marshal  %s", b, got, want)
		}
	}
	if _, err := AppendMessage(nil, &imapi.Message{Body: json.RawMessage(`{"a": nope}`)}); err == nil {
		t.Fatal("an invalid body with whitespace was written without an error")
	}
}

func TestSendBodyDecodeAllocs(t *testing.T) {
	data := []byte(sendSeeds[7])
	var r SendBatchResp
	// The results slice (grown once), the ack, its two strings and the
	// message.
	if n := testing.AllocsPerRun(100, func() { _ = DecodeSendBatchResp(data, &r) }); n > 6 {
		t.Fatalf("DecodeSendBatchResp: %v allocations, want at most 6", n)
	}
}

// A body of zero bytes is not JSON: json.Marshal refuses it, and so does
// AppendMessage; a nil one is null.
func TestAppendMessageEmptyBody(t *testing.T) {
	if _, err := AppendMessage(nil, &imapi.Message{Body: json.RawMessage{}}); err == nil {
		t.Fatal("an empty body was written")
	}
	got, err := AppendMessage(nil, &imapi.Message{})
	if want := marshal(t, &imapi.Message{}); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("nil body: %s (%v), json.Marshal %s", got, err, want)
	}
}
