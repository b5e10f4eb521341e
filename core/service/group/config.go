package group

import (
	"time"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/pkg/config"
)

// SuperConfig tunes super-groups (`service.super`).
type SuperConfig struct {
	// MaxMembers caps a super-group's members. Default 100000.
	MaxMembers int `yaml:"max_members"`
	// MaxBatch caps the accounts of one create, add or remove call and the
	// page of a member list. Default 1000.
	MaxBatch int `yaml:"max_batch"`
	// Stream and Subject are the JetStream work queue of side work
	// (subjects <subject>.<appkey>). Defaults LL_SUPER, ll.superwork.
	Stream  string `yaml:"stream"`
	Subject string `yaml:"subject"`
	// Consumer is the durable consumer shared by every service node.
	// Default super.
	Consumer string `yaml:"consumer"`
	// Workers run side-work jobs on this node. Default 4.
	Workers int `yaml:"workers"`
	// AckWait is how long a job may run before JetStream redelivers it to
	// another worker (a crashed one never acks). Default 30s.
	AckWait config.Duration `yaml:"ack_wait"`
	// MaxDeliver bounds the attempts of one job. Default 20.
	MaxDeliver int `yaml:"max_deliver"`
	// MemoryStorage keeps the work queue in memory (tests); default file.
	MemoryStorage bool `yaml:"memory_storage"`
}

// ApplyDefaults fills in the zero values.
func (c *SuperConfig) ApplyDefaults() {
	if c.MaxMembers == 0 {
		c.MaxMembers = 100_000
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = 1000
	}
	if c.Stream == "" {
		c.Stream = "LL_SUPER"
	}
	if c.Subject == "" {
		c.Subject = "ll.superwork"
	}
	if c.Consumer == "" {
		c.Consumer = "super"
	}
	if c.Workers == 0 {
		c.Workers = 4
	}
	if c.AckWait == 0 {
		c.AckWait = config.Duration(30 * time.Second)
	}
	if c.MaxDeliver == 0 {
		c.MaxDeliver = 20
	}
}

// Validate adds the problems of c (defaults applied) to errs.
func (c *SuperConfig) Validate(errs *config.Errors) {
	if c.MaxMembers < 2 {
		errs.Addf("service.super.max_members: at least 2")
	}
	if c.MaxBatch < 1 || c.MaxBatch > 10_000 {
		errs.Addf("service.super.max_batch: must be in 1..10000")
	}
	if c.Workers < 1 {
		errs.Addf("service.super.workers: at least 1")
	}
	if c.AckWait.D() < time.Second {
		errs.Addf("service.super.ack_wait: at least 1s")
	}
	if c.MaxDeliver < 1 {
		errs.Addf("service.super.max_deliver: at least 1")
	}
	if !imapi.ValidName(c.Stream) || !imapi.ValidName(c.Consumer) {
		errs.Addf("service.super.stream, consumer: want 1-64 of A-Z a-z 0-9 _ -")
	}
	if c.Subject == "" {
		errs.Addf("service.super.subject: required")
	}
}
