package state

import (
	"bytes"
	"encoding/json"
	"io"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/longlink/longlink/lbs/internal/model"
	"github.com/longlink/longlink/lbs/internal/rum"
)

type sink struct{ bytes.Buffer }

func (s *sink) ID() string    { return "test" }
func (s *sink) Cancel() error { return nil }
func (s *sink) Close() error  { return nil }

func applyCmd(t *testing.T, f *FSM, index uint64, c Command) Result {
	t.Helper()
	b, _ := json.Marshal(c)
	return f.Apply(&raft.Log{Index: index, Data: b}).(Result)
}

// Measurements are applied beside the document (no policy version, no
// recompiled engine) and survive a snapshot and restore; a snapshot from
// before the table existed restores an empty one.
func TestRUMApplyAndSnapshot(t *testing.T) {
	f := New(nil)
	doc := model.Document{Apps: []model.App{{AppKey: "a", Pools: []string{"p"}}}, Pools: []model.Pool{{Name: "p", EntryPoints: []string{"e"}}},
		EntryPoints: []model.EntryPoint{{ID: "e", Site: "s", Link: "192.0.2.1:7720"}}}
	if r := applyCmd(t, f, 1, Command{Op: OpApplyDoc, Doc: &doc, At: time.Now()}); r.Err != "" {
		t.Fatal(r.Err)
	}
	eng := f.Current().Engine
	batch := &rum.Batch{Items: []rum.Item{{Prefix: netip.MustParsePrefix("203.0.113.0/24"), EP: "e", OK: 3, SumMs: 120}}}
	r := applyCmd(t, f, 2, Command{Op: OpRUM, RUM: batch, At: time.Now()})
	if r.Err != "" || r.Version != 1 || f.Current().State.Index != 2 || f.Current().Engine != eng {
		t.Fatalf("result %+v, index %d, engine recompiled %v", r, f.Current().State.Index, f.Current().Engine != eng)
	}
	if f.RUM().Len() != 1 {
		t.Fatalf("%d prefixes", f.RUM().Len())
	}
	snap, _ := f.Snapshot()
	var s sink
	if err := snap.Persist(&s); err != nil {
		t.Fatal(err)
	}
	g := New(nil)
	if err := g.Restore(io.NopCloser(bytes.NewReader(s.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(f.RUM().Dump(), g.RUM().Dump()) || g.Current().State.Version != 1 {
		t.Fatalf("restored %+v", g.RUM().Dump())
	}
	old, _ := json.Marshal(f.Current().State) // a snapshot as written before
	h := New(nil)
	if err := h.Restore(io.NopCloser(bytes.NewReader(old))); err != nil || h.RUM().Len() != 0 || h.Current().State.Version != 1 {
		t.Fatalf("old snapshot: %v, %d prefixes", err, h.RUM().Len())
	}
}
