package sio

import (
	"errors"
	"testing"
)

func TestDecode(t *testing.T) {
	tests := []struct {
		in      string
		want    Packet
		wantErr bool
	}{
		{in: "0", want: Packet{Type: Connect, Namespace: "/", ID: -1}},
		{in: `0{"token":"x"}`, want: Packet{Type: Connect, Namespace: "/", ID: -1, Data: []byte(`{"token":"x"}`)}},
		{in: `0/admin,{"token":"x"}`, want: Packet{Type: Connect, Namespace: "/admin", ID: -1, Data: []byte(`{"token":"x"}`)}},
		{in: "1/admin,", want: Packet{Type: Disconnect, Namespace: "/admin", ID: -1}},
		{in: `2["foo",1]`, want: Packet{Type: Event, Namespace: "/", ID: -1, Data: []byte(`["foo",1]`)}},
		{in: `2/chat,12["foo"]`, want: Packet{Type: Event, Namespace: "/chat", ID: 12, Data: []byte(`["foo"]`)}},
		{in: `312["ok"]`, want: Packet{Type: Ack, Namespace: "/", ID: 12, Data: []byte(`["ok"]`)}},
		{in: `51-["b",{"_placeholder":true,"num":0}]`, want: Packet{Type: BinaryEvent, Namespace: "/", ID: -1, Attachments: 1, Data: []byte(`["b",{"_placeholder":true,"num":0}]`)}},
		{in: `61-/x,3[{"_placeholder":true,"num":0}]`, want: Packet{Type: BinaryAck, Namespace: "/x", ID: 3, Attachments: 1, Data: []byte(`[{"_placeholder":true,"num":0}]`)}},
		{in: `2[1,2]`, want: Packet{Type: Event, Namespace: "/", ID: -1, Data: []byte(`[1,2]`)}},
		{in: "", wantErr: true},
		{in: "7", wantErr: true},
		{in: `0"str"`, wantErr: true},
		{in: `0[]`, wantErr: true},
		{in: `1{}`, wantErr: true},
		{in: `2{}`, wantErr: true},
		{in: `2[]`, wantErr: true},
		{in: `2["connect"]`, wantErr: true},
		{in: `2["disconnecting"]`, wantErr: true},
		{in: `2[null]`, wantErr: true},
		{in: `2["a"`, wantErr: true},
		{in: `3{}`, wantErr: true},
		{in: `5["a"]`, wantErr: true},
		{in: `5x-["a"]`, wantErr: true},
		{in: `5999-["a"]`, wantErr: true},
		{in: `299999999999999999999["a"]`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := Decode([]byte(tt.in))
			if tt.wantErr {
				if !errors.Is(err, ErrParse) {
					t.Fatalf("Decode(%q) err = %v, want ErrParse", tt.in, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decode(%q): %v", tt.in, err)
			}
			if got.Type != tt.want.Type || got.Namespace != tt.want.Namespace || got.ID != tt.want.ID ||
				got.Attachments != tt.want.Attachments || string(got.Data) != string(tt.want.Data) {
				t.Fatalf("Decode(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			if back := string(Append(nil, got)); back != tt.in {
				t.Fatalf("Append = %q, want %q", back, tt.in)
			}
		})
	}
}

func TestEventName(t *testing.T) {
	for in, want := range map[string]string{
		`2["foo",1]`:        "foo",
		`2[ "a\"b" ]`:       `a"b`,
		`2["\u0063onnect"]`: "", // "connect" spelled with an escape is still reserved
		`2[42,"x"]`:         "42",
		`2[-1]`:             "-1",
		`5-["bin",1]`:       "bin",
	} {
		p, err := Decode([]byte(in))
		if want == "" {
			if err == nil {
				t.Errorf("Decode(%s) accepted a reserved name", in)
			}
			continue
		}
		if err != nil || p.Event != want {
			t.Errorf("Decode(%s): event %q, %v; want %q", in, p.Event, err, want)
		}
	}
}

func TestCheckAttachments(t *testing.T) {
	if err := CheckAttachments([]byte(`["a",{"x":{"_placeholder":true,"num":1}}]`), 2); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{`["a",{"_placeholder":true,"num":2}]`, `["a",{"_placeholder":true,"num":"0"}]`, `["a",{"_placeholder":true,"num":-1}]`} {
		if err := CheckAttachments([]byte(bad), 2); !errors.Is(err, ErrParse) {
			t.Errorf("CheckAttachments(%s) = %v, want ErrParse", bad, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{"0", `0{"token":"x"}`, `0/admin,{}`, "1", `2["foo",1]`, `2/chat,12["foo"]`, `312["ok"]`,
		`51-["b",{"_placeholder":true,"num":0}]`, `61-/x,3[{"_placeholder":true,"num":0}]`, `4{"message":"no"}`, "5-[]"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Decode(b)
		if err != nil {
			return
		}
		// A decoded packet encodes to bytes that decode to the same packet.
		again, err := Decode(Append(nil, p))
		if err != nil {
			t.Fatalf("re-decode of %q: %v", Append(nil, p), err)
		}
		if again.Type != p.Type || again.Namespace != p.Namespace || again.ID != p.ID || again.Attachments != p.Attachments || string(again.Data) != string(p.Data) {
			t.Fatalf("round trip changed %+v to %+v", p, again)
		}
		if p.Attachments > 0 {
			_ = CheckAttachments(p.Data, p.Attachments)
		}
	})
}

func BenchmarkDecodeEvent(b *testing.B) {
	in := []byte(`2123["send",{"conv_type":1,"to":"bob","client_msg_id":"c1","type":"text","body":{"text":"hello"}}]`)
	for b.Loop() {
		if _, err := Decode(in); err != nil {
			b.Fatal(err)
		}
	}
}
