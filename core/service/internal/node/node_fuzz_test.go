package node

import (
	"errors"
	"testing"

	"github.com/longlink/longlink/core/imapi"
)

// FuzzDecode: every request body a service node reads comes off the bus
// from a client through a gateway; whatever it holds, Decode either fills
// the request or answers 400, never anything else.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{``, `{}`, `{"to":"bob","client_msg_id":"c1","type":"text","body":{"text":"hi"}}`,
		`{"to":1}`, `[`, `null`, `{"body":"\ud800"}`, `{"mentions":["a",null]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var req imapi.SendReq
		err := Decode(body, &req)
		if err == nil {
			return
		}
		var e *imapi.Error
		if !errors.As(err, &e) || e.Code != imapi.ErrBadRequest {
			t.Fatalf("Decode(%q) = %v, want a 400", body, err)
		}
	})
}
