package weblink

import (
	"encoding/json"
	"testing"

	"github.com/longlink/longlink/core/gateway"
	"github.com/longlink/longlink/core/imapi"
)

// TestAckFor: a request's ack carries the body on success and the code,
// message and retry hint on a refusal, as a Link client reads them from
// the error body.
func TestAckFor(t *testing.T) {
	tests := []struct {
		name  string
		reply gateway.Reply
		want  string
	}{
		{"ok", gateway.Reply{Body: []byte(`{"seq":3}`)}, `{"code":0,"body":{"seq":3}}`},
		{"ok empty", gateway.Reply{}, `{"code":0}`},
		{"busy", gateway.Reply{Code: imapi.ErrUnavailable, Body: []byte(`{"code":503,"message":"busy","retry_after_ms":250}`)},
			`{"code":503,"message":"busy","retry_after_ms":250}`},
		{"no message", gateway.Reply{Code: imapi.ErrForbidden}, `{"code":403,"message":"forbidden"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := json.Marshal(ackFor(tt.reply))
			if err != nil || string(got) != tt.want {
				t.Fatalf("ack %s (%v), want %s", got, err, tt.want)
			}
		})
	}
}
