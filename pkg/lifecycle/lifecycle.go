// Package lifecycle starts a process's subsystems in order and stops them in
// reverse, so that a failure half way through start-up never leaks the
// subsystems that did start.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
)

// Component is a long-lived subsystem. Start binds its listeners and launches
// its goroutines, then returns; Shutdown drains it (stop accepting, tell the
// LBS, shed sessions) within ctx and waits for its goroutines.
type Component interface {
	Start(ctx context.Context) error
	Shutdown(ctx context.Context) error
}

// Group runs components as one.
type Group struct {
	log     *slog.Logger
	names   []string
	comps   []Component
	started int
}

// NewGroup returns an empty group.
func NewGroup(log *slog.Logger) *Group { return &Group{log: log} }

// Add appends a component; components start in the order they were added.
func (g *Group) Add(name string, c Component) {
	g.names = append(g.names, name)
	g.comps = append(g.comps, c)
}

// Start starts every component in order. If one fails, the ones already
// started are shut down in reverse order and the error is returned.
func (g *Group) Start(ctx context.Context) error {
	for i, c := range g.comps {
		if err := c.Start(ctx); err != nil {
			g.log.Error("start failed", "component", g.names[i], "err", err)
			_ = g.Shutdown(context.WithoutCancel(ctx))
			return fmt.Errorf("start %s: %w", g.names[i], err)
		}
		g.started = i + 1
		g.log.Debug("started", "component", g.names[i])
	}
	return nil
}

// Shutdown stops the started components in reverse order and joins their
// errors. It is safe to call more than once.
func (g *Group) Shutdown(ctx context.Context) error {
	var errs []error
	for i := g.started - 1; i >= 0; i-- {
		if err := g.comps[i].Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("shutdown %s: %w", g.names[i], err))
		}
	}
	g.started = 0
	return errors.Join(errs...)
}

// Func adapts a pair of functions to a Component.
type Func struct {
	StartFunc    func(ctx context.Context) error
	ShutdownFunc func(ctx context.Context) error
}

// Start calls StartFunc when set.
func (f Func) Start(ctx context.Context) error {
	if f.StartFunc == nil {
		return nil
	}
	return f.StartFunc(ctx)
}

// Shutdown calls ShutdownFunc when set.
func (f Func) Shutdown(ctx context.Context) error {
	if f.ShutdownFunc == nil {
		return nil
	}
	return f.ShutdownFunc(ctx)
}
