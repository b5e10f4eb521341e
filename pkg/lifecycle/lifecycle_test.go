package lifecycle

import (
	"context"
	"errors"
	"log/slog"
	"reflect"
	"strings"
	"testing"
)

func TestGroupStopsStartedInReverseOnFailure(t *testing.T) {
	var events []string
	comp := func(name string, fail bool) Component {
		return Func{
			StartFunc: func(context.Context) error {
				events = append(events, "start "+name)
				if fail {
					return errors.New("boom")
				}
				return nil
			},
			ShutdownFunc: func(context.Context) error {
				events = append(events, "stop "+name)
				return nil
			},
		}
	}
	g := NewGroup(slog.New(slog.DiscardHandler))
	g.Add("a", comp("a", false))
	g.Add("b", comp("b", false))
	g.Add("c", comp("c", true))
	g.Add("d", comp("d", false))
	err := g.Start(context.Background())
	if err == nil {
		t.Fatal("want error")
	}
	want := []string{"start a", "start b", "start c", "stop b", "stop a"}
	if !reflect.DeepEqual(events, want) {
		t.Fatalf("events %v, want %v", events, want)
	}
	// A second shutdown does nothing.
	events = nil
	if err := g.Shutdown(context.Background()); err != nil || len(events) != 0 {
		t.Fatalf("second shutdown: %v %v", err, events)
	}
}

func TestGroupShutdownJoinsErrors(t *testing.T) {
	g := NewGroup(slog.New(slog.DiscardHandler))
	g.Add("a", Func{ShutdownFunc: func(context.Context) error { return errors.New("a failed") }})
	g.Add("b", Func{ShutdownFunc: func(context.Context) error { return errors.New("b failed") }})
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	err := g.Shutdown(context.Background())
	if err == nil || !strings.Contains(err.Error(), "a failed") || !strings.Contains(err.Error(), "b failed") {
		t.Fatalf("err = %v", err)
	}
}
