package main

import (
	"encoding/xml"
	"io"
	"strings"
	"testing"
)

func TestCurvesParsePoints(t *testing.T) {
	var c curves
	for _, l := range []string{
		"POINT longlink 1000 1.5 4.2",
		"RESULT x 1 ms",
		"POINT baseline 1000 0.4 1.1",
		"POINT longlink 2000 2 9",
		"POINT longlink NaN 1 2",
		"POINT longlink 3000 1",
	} {
		c.add(l)
	}
	if got := strings.Join(c.order, ","); got != "longlink,baseline" {
		t.Fatalf("series %q, want longlink,baseline", got)
	}
	if n := len(c.pts["longlink"]); n != 2 {
		t.Fatalf("longlink has %d points, want 2 (malformed lines dropped)", n)
	}
	if p := c.pts["longlink"][1]; p != (point{2000, 2, 9}) {
		t.Fatalf("second point %+v", p)
	}
}

// The picture is well-formed XML with a polyline per series and
// percentile, and the goal line.
func TestPlotIsSVG(t *testing.T) {
	var c curves
	c.add("POINT longlink 1000 1.5 4.2")
	c.add("POINT longlink 8000 30 2500")
	c.add("POINT bare<&> 1000 0.2 0.9")
	out := svg(plotSpec{title: "t & t", x: "offered", y: "latency ms", goalY: 20, goalX: 10000}, "note", &c)
	d := xml.NewDecoder(strings.NewReader(out))
	lines, polylines := 0, 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not XML: %v\n%s", err, out)
		}
		if se, ok := tok.(xml.StartElement); ok {
			switch se.Name.Local {
			case "polyline":
				polylines++
			case "line":
				lines++
			}
		}
	}
	if polylines != 4 {
		t.Errorf("%d polylines, want 4 (p50 and p99 of two series)", polylines)
	}
	if !strings.Contains(out, `stroke-dasharray="2 3"`) {
		t.Errorf("no goal line")
	}
}

func TestNiceStep(t *testing.T) {
	for _, c := range []struct{ in, want float64 }{{0.7, 1}, {3, 5}, {1700, 2000}, {12000, 20000}} {
		if got := niceStep(c.in); got != c.want {
			t.Errorf("niceStep(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestWrapNote(t *testing.T) {
	note := "2026-12-08 01:32–01:44 UTC, commit 1c9ce88, load average 17.83 27.45 19.18 at the start, 28.44 31.27 25.89 at the end"
	lines := wrapNote(note, 60)
	if len(lines) < 2 || strings.Join(lines, " ") != note {
		t.Fatalf("%q", lines)
	}
	for _, l := range lines {
		if len(l) > 60 {
			t.Fatalf("line of %d bytes: %q", len(l), l)
		}
	}
	if got := wrapNote("short", 60); len(got) != 1 || got[0] != "short" {
		t.Fatalf("%q", got)
	}
	if got := wrapNote("", 60); len(got) != 0 {
		t.Fatalf("%q", got)
	}
}

func TestSummaryNote(t *testing.T) {
	n, ok := summaryNote("# summary (2026-12-08 01:32–01:44 UTC, commit 1c9ce88, load average 17.83 27.45 19.18 at the start, 28.44 31.27 25.89 at the end)")
	if !ok || n != "2026-12-08 01:32–01:44 UTC, commit 1c9ce88, load average 17.83 27.45 19.18 at the start, 28.44 31.27 25.89 at the end" {
		t.Fatalf("%q %v", n, ok)
	}
	for _, l := range []string{"RESULT x 1 ms", "# summary of nothing", "# summary (unclosed"} {
		if _, ok := summaryNote(l); ok {
			t.Fatalf("%q taken for a summary", l)
		}
	}
}
