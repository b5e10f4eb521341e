package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// A sweep benchmark prints one line per load point and series,
//
//	POINT <series> <offered load> <p50> <p99>
//
// (latencies in the plot's unit), and the bench draws them: latency
// (log scale) against offered load, p99 solid and p50 dashed, one colour
// per series (the system and its baselines of the same run), the goal as a
// dashed line. The picture is an SVG written to docs/bench/<name>.svg (or
// $BENCH_PLOT_DIR), which BENCHMARKS.md shows.

// plotSpec says how to draw a benchmark's points.
type plotSpec struct {
	title  string
	x, y   string  // axis labels
	goalY  float64 // latency goal (0: none)
	goalX  float64 // load goal (0: none)
	legend string  // what the goal lines mean
	// solid and dashed name the two values of a POINT line (the fourth and
	// the third field) in the legend: p99 and p50 unless set, for the
	// sweeps that draw something other than latency.
	solid, dashed string
}

// point is one load point of a series.
type point struct {
	x, p50, p99 float64
}

// curves are the points of a run by series, in the order first seen.
type curves struct {
	order []string
	pts   map[string][]point
}

// add parses a POINT line; it returns false for any other line.
func (c *curves) add(line string) bool {
	f := strings.Fields(line)
	if len(f) != 5 || f[0] != "POINT" {
		return false
	}
	var v [3]float64
	for i := range v {
		x, err := strconv.ParseFloat(f[2+i], 64)
		if err != nil || math.IsNaN(x) || math.IsInf(x, 0) {
			return false
		}
		v[i] = x
	}
	if c.pts == nil {
		c.pts = map[string][]point{}
	}
	if _, seen := c.pts[f[1]]; !seen {
		c.order = append(c.order, f[1])
	}
	c.pts[f[1]] = append(c.pts[f[1]], point{x: v[0], p50: v[1], p99: v[2]})
	return true
}

func (c *curves) empty() bool { return len(c.order) == 0 }

// plotPath is where a benchmark's picture goes.
func plotPath(name string) string {
	dir := os.Getenv("BENCH_PLOT_DIR")
	if dir == "" {
		dir = filepath.Join("docs", "bench")
	}
	return filepath.Join(dir, name+".svg")
}

// writePlot draws c into path.
func writePlot(path string, spec plotSpec, note string, c *curves) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(svg(spec, note, c)), 0o644)
}

var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"}

// svg renders the picture. The y axis is logarithmic (latencies span
// milliseconds to seconds around a knee), the x axis linear from 0.
func svg(spec plotSpec, note string, c *curves) string {
	const (
		w                      = 760.0
		left, right            = 70.0, 20.0
		plotW, plotH           = w - left - right, 344.0
		minDecades             = 1.0
		markerR                = 3.0
		legendRow, legendWidth = 16.0, 330.0
		noteChars              = 110 // a note line's most characters
	)
	// The note (when and at which commit) wraps at its commas; the legend
	// takes a row per two series and one for the goal, below the axis.
	notes := wrapNote(note, noteChars)
	top := 48.0 + 14*float64(max(len(notes)-1, 0))
	rows := (len(c.order) + 1) / 2
	if spec.legend != "" {
		rows++
	}
	h := top + plotH + 52 + legendRow*float64(rows)
	xmax, ymin, ymax := spec.goalX, math.Inf(1), math.Inf(-1)
	if spec.goalY > 0 {
		ymin, ymax = spec.goalY, spec.goalY
	}
	for _, s := range c.order {
		for _, p := range c.pts[s] {
			xmax = max(xmax, p.x)
			for _, y := range []float64{p.p50, p.p99} {
				if y > 0 {
					ymin, ymax = min(ymin, y), max(ymax, y)
				}
			}
		}
	}
	if math.IsInf(ymin, 0) {
		ymin, ymax = 1, 10
	}
	if xmax <= 0 {
		xmax = 1
	}
	xmax = niceCeil(xmax * 1.05)
	lo, hi := math.Floor(math.Log10(ymin)), math.Ceil(math.Log10(ymax))
	if hi-lo < minDecades {
		hi = lo + minDecades
	}
	px := func(x float64) float64 { return left + plotW*x/xmax }
	py := func(y float64) float64 {
		y = math.Max(y, math.Pow(10, lo))
		return top + plotH*(1-(math.Log10(y)-lo)/(hi-lo))
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+"\n", w, h, w, h)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%.0f" y="20" font-size="15" font-weight="bold">%s</text>`+"\n", left, esc(spec.title))
	for i, n := range notes {
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" fill="#555">%s</text>`+"\n", left, 37+14*float64(i), esc(n))
	}
	// Grid and ticks.
	for d := lo; d <= hi; d++ {
		for _, m := range []float64{1, 2, 5} {
			y := m * math.Pow(10, d)
			if math.Log10(y) > hi+1e-9 {
				break
			}
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e5e5e5"/>`+"\n", left, py(y), left+plotW, py(y))
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, py(y)+4, num(y))
		}
	}
	step := niceStep(xmax / 6)
	for x := 0.0; x <= xmax+1e-9; x += step {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e5e5e5"/>`+"\n", px(x), top, px(x), top+plotH)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", px(x), top+plotH+16, num(x))
	}
	fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#333"/>`+"\n", left, top, plotW, plotH)
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", left+plotW/2, top+plotH+34, esc(spec.x))
	fmt.Fprintf(&b, `<text transform="translate(16 %.1f) rotate(-90)" text-anchor="middle">%s</text>`+"\n", top+plotH/2, esc(spec.y+" (log scale)"))
	// Goal.
	if spec.goalY > 0 {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#000" stroke-dasharray="2 3"/>`+"\n", left, py(spec.goalY), left+plotW, py(spec.goalY))
	}
	if spec.goalX > 0 {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#000" stroke-dasharray="2 3"/>`+"\n", px(spec.goalX), top, px(spec.goalX), top+plotH)
	}
	// Series.
	for i, s := range c.order {
		col := palette[i%len(palette)]
		pts := append([]point(nil), c.pts[s]...)
		sort.SliceStable(pts, func(a, b int) bool { return pts[a].x < pts[b].x })
		for _, q := range []struct {
			y    func(point) float64
			dash string
		}{{func(p point) float64 { return p.p99 }, ""}, {func(p point) float64 { return p.p50 }, ` stroke-dasharray="6 4"`}} {
			var path []string
			for _, p := range pts {
				path = append(path, fmt.Sprintf("%.1f,%.1f", px(p.x), py(q.y(p))))
			}
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2"%s points="%s"/>`+"\n", col, q.dash, strings.Join(path, " "))
			for _, p := range pts {
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="%.0f" fill="%s"/>`+"\n", px(p.x), py(q.y(p)), markerR, col)
			}
		}
	}
	// Legend, below the axis label.
	solid, dashed := spec.solid, spec.dashed
	if solid == "" {
		solid, dashed = "p99", "p50"
	}
	ly := top + plotH + 52
	for i, s := range c.order {
		col := palette[i%len(palette)]
		x := left + float64(i%2)*legendWidth
		y := ly + float64(i/2)*legendRow
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"/>`, x, y-4, x+18, y-4, col)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f">%s</text>`+"\n", x+24, y, esc(s+" "+solid+" (solid), "+dashed+" (dashed)"))
	}
	if spec.legend != "" {
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="#333">%s</text>`+"\n", left, ly+legendRow*float64((len(c.order)+1)/2), esc(spec.legend))
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// wrapNote splits note into lines of at most n characters, at ", " where
// it can.
func wrapNote(note string, n int) []string {
	var lines []string
	for len(note) > n {
		cut := strings.LastIndex(note[:n], ", ")
		if cut <= 0 {
			break
		}
		lines = append(lines, note[:cut+1])
		note = note[cut+2:]
	}
	if note != "" {
		lines = append(lines, note)
	}
	return lines
}

// niceStep is a 1, 2 or 5 times a power of ten at least v.
func niceStep(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

// niceCeil rounds v up to a multiple of its nice step.
func niceCeil(v float64) float64 {
	s := niceStep(v / 6)
	return math.Ceil(v/s) * s
}

// num prints a tick value shortly: 0.5, 20, 2k, 1.5M.
func num(v float64) string {
	switch {
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'f', -1, 64) + "M"
	case v >= 1e3:
		return strconv.FormatFloat(v/1e3, 'f', -1, 64) + "k"
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

func esc(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace(s)
}
