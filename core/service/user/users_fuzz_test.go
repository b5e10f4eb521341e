package user

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/longlink/longlink/core/imapi"

	"github.com/longlink/longlink/core/internal/buswire"
)

// Profile updates and mute requests arrive from clients: whatever the
// bytes, validation answers without panicking, and what it accepts is
// within the limits.
func FuzzProfileUpdate(f *testing.F) {
	for _, s := range []string{
		`{"name":"Alice","avatar":"https://img.example/a.png","ext":{"city":"Oslo"}}`,
		`{"ext":{}}`, `{"ext":[1]}`, `{"ext":"x"}`, `{"avatar":"ftp://x"}`, `{"name":"\xff"}`,
		`{"ext":{"a":{"b":[1,2,{"c":null}]}}}`, `{}`, `null`, `{"ext": {"a":1} }`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var req imapi.ProfileUpdateReq
		if json.Unmarshal(body, &req) != nil {
			return
		}
		upd, err := validateProfile(&req)
		if err != nil {
			if _, ok := err.(*imapi.Error); !ok {
				t.Fatalf("error %v is not an *imapi.Error", err)
			}
			return
		}
		if upd.Name != nil && len(*upd.Name) > imapi.MaxProfileName {
			t.Fatalf("name of %d bytes accepted", len(*upd.Name))
		}
		if upd.Avatar != nil && len(*upd.Avatar) > imapi.MaxAvatarURL {
			t.Fatalf("avatar of %d bytes accepted", len(*upd.Avatar))
		}
		if upd.Ext != nil && len(upd.Ext) > 0 {
			var obj map[string]json.RawMessage
			if len(upd.Ext) > imapi.MaxProfileExt || json.Unmarshal(upd.Ext, &obj) != nil || len(obj) > imapi.MaxProfileExtKeys || !bytes.HasPrefix(upd.Ext, []byte("{")) {
				t.Fatalf("ext %q accepted", upd.Ext)
			}
		}
	})
}

// FuzzMute: whatever the bytes, a mute request resolves to a
// conversation the caller may mute, or is refused.
func FuzzMute(f *testing.F) {
	for _, s := range []string{
		`{"conv_id":"p:alice:bob"}`, `{"account":"bob"}`, `{"conv_id":"g:team","account":"x"}`, `{"conv_id":"p:b:a"}`,
	} {
		f.Add([]byte(s))
	}
	sess := &buswire.Session{AppKey: "demo", Account: "alice"}
	f.Fuzz(func(t *testing.T, body []byte) {
		var m imapi.MuteReq
		if json.Unmarshal(body, &m) == nil {
			if conv, err := muteConv(sess, &m); err == nil {
				typ, a, b, ok := imapi.ParseConvID(conv)
				if !ok || (typ == imapi.ConvP2P && a != "alice" && b != "alice") {
					t.Fatalf("muteConv accepted %q", conv)
				}
			}
		}
	})
}
