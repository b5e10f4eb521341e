package eio

import (
	"bytes"
	"errors"
	"testing"
)

func TestDecodePayload(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		want    []Packet
		wantErr bool
	}{
		{"one", "4hello", []Packet{{Type: Message, Data: []byte("hello")}}, false},
		{"batch", "4test1\x1e4test2\x1e2", []Packet{{Type: Message, Data: []byte("test1")}, {Type: Message, Data: []byte("test2")}, {Type: Ping, Data: []byte{}}}, false},
		{"binary", "4hello\x1ebAQIDBA==", []Packet{{Type: Message, Data: []byte("hello")}, {Type: Message, Data: []byte{1, 2, 3, 4}, Binary: true}}, false},
		{"invalid", "abc", nil, true},
		{"bad type", "7x", nil, true},
		{"empty", "", nil, true},
		{"stops at error", "4a\x1e\x1e4b", []Packet{{Type: Message, Data: []byte("a")}}, true},
		{"bad base64", "b!!", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodePayload([]byte(tt.body))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrParse) {
				t.Fatalf("err = %v, want ErrParse", err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d packets, want %d", len(got), len(tt.want))
			}
			for i := range got {
				if got[i].Type != tt.want[i].Type || got[i].Binary != tt.want[i].Binary || !bytes.Equal(got[i].Data, tt.want[i].Data) {
					t.Errorf("packet %d = %+v, want %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestAppendPayload(t *testing.T) {
	var b []byte
	b = AppendPayload(b, Packet{Type: Message, Data: []byte("hello")})
	b = AppendPayload(b, Packet{Type: Message, Data: []byte{1, 2, 3, 4}, Binary: true})
	b = AppendPayload(b, Packet{Type: Ping})
	if got, want := string(b), "4hello\x1ebAQIDBA==\x1e2"; got != want {
		t.Fatalf("payload = %q, want %q", got, want)
	}
}

func FuzzDecodePayload(f *testing.F) {
	for _, s := range []string{"4hello", "4a\x1e4b\x1ebAQIDBA==", "2probe", "5", "6", "1", "b", "0{}", "\x1e\x1e", "babc="} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		pkts, err := DecodePayload(body)
		if err == nil {
			// A payload that decodes re-encodes to one that decodes to the same packets.
			var enc []byte
			for _, p := range pkts {
				enc = AppendPayload(enc, p)
			}
			again, err := DecodePayload(enc)
			if err != nil || len(again) != len(pkts) {
				t.Fatalf("re-encoded %q: %v (%d packets, want %d)", enc, err, len(again), len(pkts))
			}
			for i := range again {
				if again[i].Type != pkts[i].Type || !bytes.Equal(again[i].Data, pkts[i].Data) {
					t.Fatalf("packet %d changed: %+v vs %+v", i, again[i], pkts[i])
				}
			}
		}
	})
}

func TestDecodeTextAllocs(t *testing.T) {
	in := []byte(`42["echo","hello"]`)
	if a := testing.AllocsPerRun(100, func() { _, _ = DecodeText(in) }); a != 0 {
		t.Fatalf("DecodeText allocates %v times for a text packet", a)
	}
}
