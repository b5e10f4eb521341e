// Package msg is the message domain of the app services: send (1:1, group
// and super-group conversations, with moderation, the durable commit, the
// pushes, the webhook copy and the hand-off to offline push), sync,
// history, read receipts, recall and the conversation list, and the
// super-groups' side work on JetStream (super.go).
package msg

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/longlink/longlink/core/imapi"

	"github.com/longlink/longlink/core/internal/buswire"
	"github.com/longlink/longlink/core/service/group"
	"github.com/longlink/longlink/core/service/internal/dispatch"
	"github.com/longlink/longlink/core/service/internal/node"
	"github.com/longlink/longlink/core/webhook"
)

// Config tunes the message domain.
type Config struct {
	RecallWindow    time.Duration // the sender may recall this long after sending
	MaxMessageBytes int           // a message body's size
	MaxMentions     int           // mentions of one message
	ConvListLimit   int           // conversations listed
	// BlockBoth are the apps whose blacklist blocks both ways (else
	// inbound only).
	BlockBoth map[string]bool
	// Super is the super-groups' side work (stream, consumer, workers).
	Super group.SuperConfig
	// Replicas of the side work's stream (the bus's replica count).
	Replicas int
}

// Hooks is what messages need of core/webhook: the moderation hook asked
// before a message is stored, and the data-sync copy queued after.
type Hooks interface {
	Moderate(ctx context.Context, appkey string, m webhook.ModerationRequest) (webhook.Decision, error)
	Publish(ctx context.Context, appkey string, ev webhook.Event) error
}

// OfflinePusher is what messages need of core/push. MessageStored must not
// block.
type OfflinePusher interface {
	MessageStored(appkey string, m *imapi.Message, recipients []string)
}

// Messages serves the message ops and the server API's sends.
type Messages struct {
	n       *node.Node
	cfg     Config
	hooks   Hooks               // nil: no webhooks
	offline OfflinePusher       // nil: no offline push
	js      jetstream.JetStream // nil: super-group side work is refused
	metrics *metrics
	side    sideWork
}

// New builds the message domain.
func New(n *node.Node, cfg Config, hooks Hooks, offline OfflinePusher, js jetstream.JetStream, reg prometheus.Registerer) (*Messages, error) {
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &Messages{n: n, cfg: cfg, hooks: hooks, offline: offline, js: js, metrics: m}, nil
}

// Routes are the message ops. A gateway sends a session's sends as batches
// (core/gateway/ORDER.md); a plain send is a batch of one.
func (s *Messages) Routes() []dispatch.Route {
	return []dispatch.Route{
		{Op: buswire.OpSendBatch, Handle: s.sendBatch},
		{Op: imapi.OpSend, Handle: s.send},
		{Op: imapi.OpSync, Handle: s.sync},
		{Op: imapi.OpHistory, Handle: s.history},
		{Op: imapi.OpRead, Handle: s.read},
		{Op: imapi.OpRecall, Handle: s.recall},
		{Op: imapi.OpConvList, Handle: s.convList},
	}
}

// Start starts the super-groups' side work.
func (s *Messages) Start(ctx context.Context) error { return s.startSideWork(ctx) }

// Stop stops pulling side work and waits for the jobs in hand.
func (s *Messages) Stop(ctx context.Context) { s.stopSideWork(ctx) }
