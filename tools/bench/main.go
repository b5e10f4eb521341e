// Command bench runs Longlink's benchmarks by name, each bounded in time, and
// prints the figures they measure as lines of the form
//
//	RESULT <figure> <value> <unit>
//
// with baselines from the same run printed the same way.
//
//	go run ./tools/bench list     lists the benchmarks
//	go run ./tools/bench NAME     runs one
//	go run ./tools/bench redraw NAME < run.txt   draws a sweep's picture again from a run's saved output
//
// Each benchmark is registered by a file bench_<component>.go in this folder.
// Most run a Go program or a `go test -bench` in the component's package and
// pass its output through; RESULT lines are collected and repeated at the end,
// with the commit, the time and the machine's load average at the start and
// the end (the figures of a shared machine need them). A sweep benchmark
// also prints POINT lines, drawn as a picture (plot.go).
package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"
)

// benchmark is one named measurement.
type benchmark struct {
	name    string
	summary string
	limit   time.Duration // the run is killed after this long
	// argv is the command to run from the repository root.
	argv []string
	env  []string
	// plot, when set, draws the run's POINT lines (plot.go).
	plot *plotSpec
}

var benchmarks = map[string]benchmark{}

func register(b benchmark) {
	if _, dup := benchmarks[b.name]; dup {
		panic("bench: duplicate " + b.name)
	}
	benchmarks[b.name] = b
}

func main() {
	if len(os.Args) == 3 && os.Args[1] == "redraw" {
		if err := redraw(os.Args[2], os.Stdin); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: go run ./tools/bench list | NAME | redraw NAME < run.txt")
		os.Exit(2)
	}
	if os.Args[1] == "list" {
		names := make([]string, 0, len(benchmarks))
		for n := range benchmarks {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Printf("%-24s %s (at most %s)\n", n, benchmarks[n].summary, benchmarks[n].limit)
		}
		return
	}
	b, ok := benchmarks[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "bench: no benchmark %q; try 'list'\n", os.Args[1])
		os.Exit(2)
	}
	if err := run(b); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(b benchmark) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, b.limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, b.argv[0], b.argv[1:]...)
	cmd.Env = append(os.Environ(), b.env...)
	cmd.Stderr = os.Stderr
	// Kill the whole process group so that servers started by the benchmark
	// never outlive it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	started, startLoad := time.Now().UTC(), loadAverage()
	commit := gitCommit()
	fmt.Printf("# %s: %s\n# command: %s\n# started: %s, commit %s, load average %s\n", b.name, b.summary, strings.Join(b.argv, " "),
		started.Format(time.RFC3339), commit, startLoad)
	if err := cmd.Start(); err != nil {
		return err
	}
	var c curves
	results := collect(out, os.Stdout, &c)
	werr := cmd.Wait()
	if ctx.Err() == context.DeadlineExceeded {
		return fmt.Errorf("%s: stopped after its limit of %s", b.name, b.limit)
	}
	if werr != nil {
		return fmt.Errorf("%s: %w", b.name, werr)
	}
	if len(results) == 0 {
		return fmt.Errorf("%s: printed no RESULT line", b.name)
	}
	ended := fmt.Sprintf("%s–%s UTC, commit %s, load average %s at the start, %s at the end",
		started.Format("2006-01-02 15:04"), time.Now().UTC().Format("15:04"), commit, startLoad, loadAverage())
	if b.plot != nil && !c.empty() {
		path := plotPath(b.name)
		if err := writePlot(path, *b.plot, ended, &c); err != nil {
			return fmt.Errorf("%s: picture: %w", b.name, err)
		}
		fmt.Printf("# picture: %s\n", path)
	}
	fmt.Println("# summary (" + ended + ")") // summaryNote reads it back
	for _, r := range results {
		fmt.Println(r)
	}
	return nil
}

// redraw draws the picture of benchmark name from a run's saved output
// (its POINT lines, and its summary line for when and at which commit), as
// the run drew it: after a change to the drawing, without measuring again.
func redraw(name string, r io.Reader) error {
	b, ok := benchmarks[name]
	if !ok || b.plot == nil {
		return fmt.Errorf("no sweep benchmark %q", name)
	}
	var c curves
	note := ""
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if n, ok := summaryNote(line); ok {
			note = n
		}
		c.add(line)
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if c.empty() {
		return fmt.Errorf("%s: no POINT lines in the input", name)
	}
	path := plotPath(name)
	if err := writePlot(path, *b.plot, note, &c); err != nil {
		return err
	}
	fmt.Printf("# picture: %s\n", path)
	return nil
}

// summaryNote is what a run's summary line says in parentheses (the time,
// commit and load average).
func summaryNote(line string) (string, bool) {
	rest, ok := strings.CutPrefix(line, "# summary (")
	if !ok || !strings.HasSuffix(rest, ")") {
		return "", false
	}
	return strings.TrimSuffix(rest, ")"), true
}

// loadAverage is /proc/loadavg's three averages.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "?"
}

// gitCommit is the checked-out commit, marked when the tree has changes.
func gitCommit() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "?"
	}
	c := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(strings.TrimSpace(string(st))) > 0 {
		c += "+changes"
	}
	return c
}

// collect copies the benchmark's output and keeps its RESULT lines; POINT
// lines go into c.
func collect(r io.Reader, w io.Writer, c *curves) []string {
	var results []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		fmt.Fprintln(w, line)
		if f := strings.Fields(line); len(f) == 4 && f[0] == "RESULT" {
			results = append(results, line)
		}
		c.add(line)
	}
	return results
}
