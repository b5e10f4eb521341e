package buswire

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/longlink/longlink/core/imapi"
)

var busSeeds = []string{
	`{"session":{"appkey":"app","account":"u1","device_id":"d","device_type":"phone","session_id":"s1","gateway":"gw","client_ip":"127.0.0.1"},"body":{"conv_type":1,"to":"u2","client_msg_id":"c1","type":"text","body":{"t":1}}}`,
	`{"session":{"appkey":"app","account":"u1","sdk":"go/1"}}`,
	`{"op":{"Service":2,"Command":2},"body":{"msg_id":"m1","seq":3},"except_session":"s1"}`,
	`{"op":{"Service":1,"Command":4},"body":null,"kick_device_type":"*","only_session":"x"}`,
	`{"code":0,"body":{"msg_id":"m","seq":1}}`,
	`{"code":503,"message":"busy"}`,
	` { "code" : 7 , "message" : "caf\u00e9 \"q\"" , "body" : [1, {"a":"}"}] } `,
	`{"Code":1}`,
	`{"code":-1}`,
	`{"code":65536}`,
	`{"op":{"service":2,"Command":300}}`,
	`{"session":{"appkey":"a\xffb"},"body":"x"}`,
	`{"session":null,"body":null,"extra":1}`,
	`{"body":1,"body":{"x":2}}`,
	`[1,2]`,
	`{"code":1`,
	`{"conv_type":1,"to":"u2","client_msg_id":"c1","type":"text","body":{"text":"hi"},"mentions":["a","b"]}`,
	`{"conv_type":2,"to":"g","client_msg_id":"c","body":"x","mentions":[]}`,
	`{"conv_type":-1,"to":"u2","mentions":null}`,
	`{"conv_type":1.5,"mentions":["a",1]}`,
	`{"conv_type":99999999,"mentions":[ "a" , "\u0041" ]}`,
	`{"session":{"appkey":"app","account":"u1"},"sent":1765130000123,"body":{"sends":[{"to":"u2"}]}}`,
	`{"session":{},"sent":-1}`,
	`{"session":{},"sent":99999999999999999999}`,
}

func sameDecode[T any](t *testing.T, data []byte, decode func([]byte, *T) error) {
	t.Helper()
	var want, got T
	werr := json.Unmarshal(data, &want)
	gerr := decode(data, &got)
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("%T of %q: encoding/json error %v, fast path error %v", want, data, werr, gerr)
	}
	if werr == nil && !reflect.DeepEqual(want, got) {
		t.Fatalf("%T of %q:\n encoding/json %+v\n fast path     %+v", want, data, want, got)
	}
}

// FuzzEnvelopes: the hand-written decoders accept exactly what
// encoding/json accepts, with the same result.
func FuzzEnvelopes(f *testing.F) {
	for _, s := range busSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		sameDecode(t, data, DecodeRequest)
		sameDecode(t, data, DecodePush)
		sameDecode(t, data, DecodeReply)
		sameDecode(t, data, DecodeSendReq)
	})
}

func TestBusEnvelopeSeeds(t *testing.T) {
	for _, s := range busSeeds {
		sameDecode(t, []byte(s), DecodeRequest)
		sameDecode(t, []byte(s), DecodePush)
		sameDecode(t, []byte(s), DecodeReply)
		sameDecode(t, []byte(s), DecodeSendReq)
	}
}

// The encoders write what encoding/json reads back as the same value.
func TestBusEnvelopeEncoders(t *testing.T) {
	pushes := []Push{
		{Op: imapi.OpPush, Body: json.RawMessage(`{"a":"b"}`), ExceptSession: "s1"},
		{Op: imapi.OpKick, KickDeviceType: "*", OnlySession: "q\"\\\x01\xffé"},
	}
	for _, p := range pushes {
		b := AppendPush(nil, &p)
		var got Push
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		want := p
		if want.Body == nil {
			want.Body = json.RawMessage("null")
		}
		want.OnlySession = string(bytes.ToValidUTF8([]byte(want.OnlySession), []byte("\uFFFD")))
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: got %+v, want %+v", b, got, want)
		}
		std, _ := json.Marshal(&p)
		var viaStd Push
		_ = json.Unmarshal(std, &viaStd)
		if !reflect.DeepEqual(got, viaStd) {
			t.Fatalf("differs from json.Marshal: %s vs %s", b, std)
		}
	}
	for _, r := range []Reply{{}, {Code: imapi.ErrUnavailable, Message: "busy"}, {Body: json.RawMessage(`{"seq":1}`)}} {
		b := AppendReply(nil, &r)
		var got Reply
		if err := json.Unmarshal(b, &got); err != nil || !reflect.DeepEqual(got, r) {
			t.Fatalf("%s: got %+v (%v), want %+v", b, got, err, r)
		}
	}
}

func TestBusDecodeAllocs(t *testing.T) {
	data := []byte(busSeeds[2])
	var p Push
	n := testing.AllocsPerRun(100, func() { _ = DecodePush(data, &p) })
	if n > 1 { // the except_session string
		t.Fatalf("DecodePush: %v allocations, want at most 1", n)
	}
}

// The encoders write byte for byte what json.Marshal writes, strings that
// encoding/json escapes included (HTML characters, newlines, U+2028,
// invalid UTF-8), so that a hand-written encoder and json.Marshal can
// take turns on one subject.
func TestBusEncodersMatchMarshal(t *testing.T) {
	for _, s := range []string{"", "s1", "<a href=\"x\">&</a>", "line\nbreak\ttab", "\u2028\x01\xff", "café"} {
		p := Push{Op: imapi.OpKick, Body: json.RawMessage(`{"code":1002}`), ExceptSession: s, OnlySession: s, KickDeviceType: s}
		if got, want := AppendPush(nil, &p), marshal(t, &p); !bytes.Equal(got, want) {
			t.Fatalf("push with %q:\n AppendPush %s\n json.Marshal  %s", s, got, want)
		}
		r := Reply{Code: imapi.ErrUnavailable, Message: s, Body: json.RawMessage(`{"seq":1}`)}
		if got, want := AppendReply(nil, &r), marshal(t, &r); !bytes.Equal(got, want) {
			t.Fatalf("reply with %q:\n AppendReply %s\n json.Marshal   %s", s, got, want)
		}
	}
}

func marshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
