package main

import (
	"bufio"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/longlink/longlink/tools/wanemu/wan"
)

// longlinkRun runs real `longlink` processes in a world: it builds the
// binary, holds the run's cluster CA and KCP cluster key, and starts each
// process in its node's namespace.
type longlinkRun struct {
	w          *wan.World
	dir        string // the run's files
	bin        string
	pkiDir     string
	clusterEnv string
	done       chan struct{} // closed when the measurement ends: exits are expected then
}

// newLonglinkRun builds cmd/longlink into dir and issues a certificate for
// each of nodes (name → world address), valid for its address and loopback.
func newLonglinkRun(ctx context.Context, w *wan.World, dir string, nodes map[string]string) (*longlinkRun, error) {
	r := &longlinkRun{w: w, dir: dir, bin: filepath.Join(dir, "longlink"), pkiDir: filepath.Join(dir, "pki"), done: make(chan struct{})}
	build := exec.CommandContext(ctx, "go", "build", "-o", r.bin, "./cmd/longlink")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return nil, fmt.Errorf("go build ./cmd/longlink (run from the repository root): %w", err)
	}
	// Node certificates must name the nodes' world addresses: tunnels
	// verify the address they dial.
	if err := issueNodeCerts(r.pkiDir, nodes); err != nil {
		return nil, fmt.Errorf("issue node certificates: %w", err)
	}
	key := make([]byte, 32)
	crand.Read(key)
	r.clusterEnv = "LONGLINK_CLUSTER_KEY=" + hex.EncodeToString(key)
	return r, nil
}

// security is the config section of node name: its certificate and the
// run's cluster key.
func (r *longlinkRun) security(name string) string {
	return fmt.Sprintf("security: {ca_file: %[1]s/ca.pem, cert_file: %[1]s/%[2]s.pem, key_file: %[1]s/%[2]s-key.pem, cluster_key: env:LONGLINK_CLUSTER_KEY}\n",
		r.pkiDir, name)
}

// config writes a config file into the run's directory and returns its path.
func (r *longlinkRun) config(name, text string) (string, error) {
	path := filepath.Join(r.dir, name)
	return path, os.WriteFile(path, []byte(text), 0o600)
}

// start runs `longlink args…` in node's namespace with the cluster key in
// its environment. An exit before the run ends is reported.
func (r *longlinkRun) start(ctx context.Context, node string, env []string, args ...string) (*exec.Cmd, error) {
	cmd, err := r.w.Command(ctx, node, r.bin, args...)
	if err != nil {
		return nil, err
	}
	cmd.Env = append(append(os.Environ(), r.clusterEnv), env...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := r.w.Spawn(cmd); err != nil {
		return nil, fmt.Errorf("longlink %s: %w", args[0], err)
	}
	fmt.Fprintf(os.Stderr, "# started in %s: longlink %s\n", node, strings.Join(args, " "))
	go func() {
		err := cmd.Wait()
		select {
		case <-r.done:
		default:
			if !killedByUs(cmd) {
				fmt.Fprintf(os.Stderr, "# longlink %s in %s exited early: %v\n", args[0], node, err)
			}
		}
	}()
	return cmd, nil
}

// killedByUs reports whether cmd died of the SIGKILL a benchmark sent.
func killedByUs(cmd *exec.Cmd) bool {
	return cmd.ProcessState != nil && strings.Contains(cmd.ProcessState.String(), "killed")
}

// finish marks the end of the measurement: processes may exit now.
func (r *longlinkRun) finish() { close(r.done) }

// metrics fetches a process's Prometheus text from its debug address,
// from inside node's namespace. The socket is made on the namespace's
// thread (net/http would dial from another goroutine, in the host's
// namespace).
func (r *longlinkRun) metrics(node, addr string) (string, error) {
	var conn net.Conn
	if err := r.w.Do(node, func() (err error) {
		conn, err = net.DialTimeout("tcp", addr, 5*time.Second)
		return err
	}); err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(conn, "GET /metrics HTTP/1.0\r\nHost: %s\r\n\r\n", addr); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET /metrics from %s: %s", addr, resp.Status)
	}
	body, err := io.ReadAll(resp.Body)
	return string(body), err
}

// metricSum adds up every sample of the metric name whose labels contain
// all of the given label pairs (`event="recovered"`).
func metricSum(text, name string, labels ...string) float64 {
	var sum float64
	for _, v := range metricSamples(text, name, labels...) {
		sum += v
	}
	return sum
}

// metricSamples is every sample of the metric name whose labels contain all
// of the given label pairs, in the text's order.
func metricSamples(text, name string, labels ...string) []float64 {
	var vs []float64
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name) || len(line) == len(name) || (line[len(name)] != '{' && line[len(name)] != ' ') {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if !ok {
			continue
		}
		var v float64
		if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v); err == nil {
			vs = append(vs, v)
		}
	}
	return vs
}
