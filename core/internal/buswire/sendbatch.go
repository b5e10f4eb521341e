package buswire

import (
	"encoding/json"

	"github.com/longlink/longlink/core/imapi"
)

// OpSendBatch is a bus request only, never a client's: a gateway sends a
// session's sends as one batch, at most one batch of a session on the bus
// at a time, and the service stores the batch in one transaction in its
// order (core/gateway/ORDER.md). SendBatchReq → SendBatchResp.
var OpSendBatch = imapi.Op{Service: imapi.SvcMsg, Command: 10}

func init() { imapi.Register(OpSendBatch, "send.batch") }

// MaxSendBatch caps the sends of one batch.
const MaxSendBatch = 256

// SendBatchReq is a session's sends in the order the client sent them,
// each an imapi.SendReq as the client sent it.
type SendBatchReq struct {
	Sends []json.RawMessage `json:"sends"`
}

// SendBatchResp answers every send of the batch, in order. The results
// are a prefix of definitive answers (stored, or refused for good)
// followed, when the service could not finish the batch, by retryable
// refusals only: a send after a retryable refusal is never stored, so the
// gateway resends the tail as it is without reordering anything.
type SendBatchResp struct {
	Results []SendResult `json:"results"`
}

// SendResult is one send's answer: Ack, or an error code.
type SendResult struct {
	Code         imapi.Code     `json:"code,omitempty"`
	Message      string         `json:"message,omitempty"`
	RetryAfterMs int64          `json:"retry_after_ms,omitempty"`
	Ack          *imapi.SendAck `json:"ack,omitempty"`
}
