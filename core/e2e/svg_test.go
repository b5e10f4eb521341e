package e2e

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// drawSweep writes an SVG of p99 latency (send → delivery, log scale)
// against offered load, one line per series, with the 20 ms goal.
func drawSweep(path string, order []string, series map[string][]loadPoint) error {
	const w, h, left, right, top, bottom = 720, 420, 70, 170, 30, 50
	maxX := 0
	for _, pts := range series {
		for _, p := range pts {
			maxX = max(maxX, p.offered)
		}
	}
	if maxX == 0 {
		return fmt.Errorf("no points to draw")
	}
	lo, hi := math.Log10(1), math.Log10(1000) // 1 ms .. 1 s
	x := func(v int) float64 { return left + float64(v)/float64(maxX)*float64(w-left-right) }
	y := func(d time.Duration) float64 {
		ms := math.Max(float64(d)/float64(time.Millisecond), 1)
		l := math.Min(math.Log10(ms), hi)
		return float64(h-bottom) - (l-lo)/(hi-lo)*float64(h-top-bottom)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", w, h)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", w, h)
	fmt.Fprintf(&b, `<text x="%d" y="18" font-size="14">durable 1:1, p99 send→delivery vs offered load</text>`+"\n", left)
	// Axes and grid.
	for _, ms := range []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000} {
		yy := y(time.Duration(ms * float64(time.Millisecond)))
		stroke := "#eee"
		if ms == 20 {
			stroke = "#c00"
		}
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="%s"/>`+"\n", left, yy, w-right, yy, stroke)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%g ms</text>`+"\n", left-6, yy+4, ms)
	}
	for i := 0; i <= 5; i++ {
		v := maxX * i / 5
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%d</text>`+"\n", x(v), h-bottom+16, v)
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">offered load, messages/s</text>`+"\n", (left+w-right)/2, h-12)
	colors := []string{"#555", "#1f77b4", "#2ca02c", "#d62728", "#9467bd"}
	for i, name := range order {
		pts := series[name]
		color := colors[i%len(colors)]
		var path []string
		for _, p := range pts {
			path = append(path, fmt.Sprintf("%.1f,%.1f", x(p.offered), y(p.p99)))
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`+"\n", x(p.offered), y(p.p99), color)
		}
		fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>`+"\n", strings.Join(path, " "), color)
		fmt.Fprintf(&b, `<text x="%d" y="%d" fill="%s">%s</text>`+"\n", w-right+10, top+20+18*i, color, name)
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#c00">goal 20 ms</text>`+"\n", w-right+10, top+20+18*len(order))
	b.WriteString("</svg>\n")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}
