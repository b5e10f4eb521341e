// Package group is the group domain of the app services: ordinary groups
// (group.*: every member listed, events to all members, roles, invite
// mode, profile) and super-groups (super.*: up to super.max_members,
// members paged, events only to the accounts concerned). Both kinds run
// the same flows (flow.go) over a small interface (kind), so a rule such
// as "the owner cannot leave" is written once. Messages of both kinds are
// core/service/msg's.
package group

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/service/internal/dispatch"
	"github.com/longlink/longlink/core/service/internal/node"
	"github.com/longlink/longlink/core/store"
)

// Group events (imapi.GroupEvent.Kind).
const (
	GroupCreated     = "created"
	GroupAdded       = "added"
	GroupRemoved     = "removed"
	GroupLeft        = "left"
	GroupDismissed   = "dismissed"
	GroupUpdated     = "updated"
	GroupRole        = "role"
	GroupTransferred = "transferred"
)

// Groups serves the group.* and super.* ops.
type Groups struct {
	n        *node.Node
	ordinary ordinary
	super    super
}

// New builds the group domain: maxMembers caps an ordinary group, sc
// tunes super-groups.
func New(n *node.Node, maxMembers int, sc SuperConfig, reg prometheus.Registerer) (*Groups, error) {
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	g := &Groups{n: n}
	g.ordinary = ordinary{n: n, maxMembers: maxMembers}
	g.super = super{n: n, cfg: sc, metrics: m}
	return g, nil
}

// Routes are the group and super-group ops.
func (g *Groups) Routes() []dispatch.Route {
	return []dispatch.Route{
		{Op: imapi.OpGroupCreate, Handle: create[store.Group](g.n, g.ordinary)},
		{Op: imapi.OpGroupAdd, Handle: addMembers[store.Group](g.n, g.ordinary)},
		{Op: imapi.OpGroupRemove, Handle: removeMembers[store.Group](g.ordinary)},
		{Op: imapi.OpGroupInfo, Handle: info[store.Group](g.ordinary)},
		{Op: imapi.OpGroupList, Handle: list[store.Group](g.ordinary)},
		{Op: imapi.OpGroupLeave, Handle: leave[store.Group](g.ordinary)},
		{Op: imapi.OpGroupDismiss, Handle: dismiss[store.Group](g.ordinary)},
		{Op: imapi.OpGroupUpdate, Handle: g.ordinary.update},
		{Op: imapi.OpGroupRole, Handle: g.ordinary.setRole},
		{Op: imapi.OpGroupTransfer, Handle: g.ordinary.transfer},

		{Op: imapi.OpSuperCreate, Handle: create[store.SuperGroup](g.n, g.super)},
		{Op: imapi.OpSuperAdd, Handle: addMembers[store.SuperGroup](g.n, g.super)},
		{Op: imapi.OpSuperRemove, Handle: removeMembers[store.SuperGroup](g.super)},
		{Op: imapi.OpSuperInfo, Handle: info[store.SuperGroup](g.super)},
		{Op: imapi.OpSuperMembers, Handle: g.super.members},
		{Op: imapi.OpSuperList, Handle: list[store.SuperGroup](g.super)},
		{Op: imapi.OpSuperLeave, Handle: leave[store.SuperGroup](g.super)},
		{Op: imapi.OpSuperDismiss, Handle: dismiss[store.SuperGroup](g.super)},
	}
}

// Start has nothing to start: groups keep no state on the node.
func (g *Groups) Start(context.Context) error { return nil }

// Stop has nothing to stop.
func (g *Groups) Stop(context.Context) {}
