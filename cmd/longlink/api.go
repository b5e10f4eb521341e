package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/longlink/longlink/core/serverapi"
)

func init() {
	register(command{name: "api", summary: "call the server HTTP API as the demo app of `longlink dev` (signed)", run: runAPI})
}

// runAPI is the app's server in one command, for trying the server API
// against `longlink dev`: `longlink api POST /v1/rooms '{"room_id":"r1"}'`
// signs the request with the demo app's secret from dev.json and prints
// the answer.
func runAPI(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("api", flag.ContinueOnError)
	dir := fs.String("dir", ".longlink", "`directory` of longlink dev (the app secret is in dev.json)")
	server := fs.String("server", "http://127.0.0.1:7712", "server HTTP API base `URL`")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: longlink api [-dir D] [-server URL] METHOD PATH [JSON BODY]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() < 2 || fs.NArg() > 3 || !strings.HasPrefix(fs.Arg(1), "/") {
		fs.Usage()
		return errors.New("want METHOD PATH [JSON BODY]")
	}
	var body []byte
	if fs.NArg() == 3 {
		body = []byte(fs.Arg(2))
		if !json.Valid(body) {
			return errors.New("the body is not valid JSON")
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, status, err := devAPI(ctx, *dir, *server, fs.Arg(0), fs.Arg(1), body)
	if err != nil {
		return err
	}
	var pretty bytes.Buffer
	if json.Indent(&pretty, out, "", "  ") == nil {
		out = pretty.Bytes()
	}
	fmt.Println(strings.TrimSpace(string(out)))
	if status/100 != 2 {
		return fmt.Errorf("%d %s", status, http.StatusText(status))
	}
	return nil
}

// devAPI makes one server API call signed as the demo app of `longlink
// dev` in dir (its secret is in dev.json) and returns the answer's body
// and status.
func devAPI(ctx context.Context, dir, server, method, path string, body []byte) ([]byte, int, error) {
	b, err := os.ReadFile(filepath.Join(dir, "dev.json"))
	if err != nil {
		return nil, 0, fmt.Errorf("%w (start `longlink dev` first)", err)
	}
	var st devState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, 0, fmt.Errorf("%s: %w", filepath.Join(dir, "dev.json"), err)
	}
	req, err := http.NewRequestWithContext(ctx, strings.ToUpper(method), strings.TrimSuffix(server, "/")+path, bytes.NewReader(body))
	if err != nil {
		return nil, 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	serverapi.Sign(req, devAppKey, st.AppSecret, "cli-"+randomHex(12), time.Now(), body)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, 0, err
	}
	return out, resp.StatusCode, nil
}
