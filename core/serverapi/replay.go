package serverapi

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Replay protection holds for the whole cluster: a request's (appkey,
// nonce) is claimed with an atomic create in a replicated JetStream KV
// bucket whose keys live twice the signing window (a timestamp may be up to
// a window early or late). Whichever node a replay reaches, and however
// often nodes restart, the create fails while the first use is remembered.
// The bucket is bounded in bytes (nonce_store_bytes): when it is full of
// live nonces new requests are refused (429) rather than a live nonce
// forgotten. When the engine cannot answer, requests are refused (503):
// a replay check that cannot be made is not skipped.

type nonceResult int

const (
	nonceFresh nonceResult = iota
	nonceReplayed
	nonceFull
)

type replayGuard struct {
	kv jetstream.KeyValue
}

func openReplayGuard(ctx context.Context, js jetstream.JetStream, bucket string, ttl time.Duration, maxBytes int64, replicas int) (*replayGuard, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: bucket, Description: "longlink server API nonces (replay protection)",
		TTL: ttl, History: 1, MaxBytes: maxBytes, Storage: jetstream.FileStorage, Replicas: max(replicas, 1),
	})
	if err != nil {
		return nil, fmt.Errorf("serverapi: nonce bucket %s: %w", bucket, err)
	}
	return &replayGuard{kv: kv}, nil
}

// claim records the nonce unless it was used within the bucket's TTL.
// Appkeys and nonces are 1-64 of A-Z a-z 0-9 _ - (checked by sign.Parse),
// all valid in KV keys.
func (g *replayGuard) claim(ctx context.Context, appkey, nonce string) (nonceResult, error) {
	_, err := g.kv.Create(ctx, appkey+"."+nonce, nil)
	switch {
	case err == nil:
		return nonceFresh, nil
	case errors.Is(err, jetstream.ErrKeyExists):
		return nonceReplayed, nil
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == jsErrStoreFailed && strings.Contains(apiErr.Description, "maximum bytes") {
		return nonceFull, nil // full of live nonces
	}
	return 0, err
}

// jsErrStoreFailed is JetStream's "storing a message failed" (here: the
// bucket's max_bytes reached), which nats.go does not name.
const jsErrStoreFailed jetstream.ErrorCode = 10077
