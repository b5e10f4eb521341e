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
	"github.com/longlink/longlink/pkg/config"
)

func init() {
	register(command{name: "api", summary: "call the server HTTP API, signed as the demo app of `longlink dev` or as -appkey with -secret", run: runAPI})
}

// runAPI is the app's server in one command, for trying the server API
// against `longlink dev`: `longlink api POST /v1/rooms '{"room_id":"r1"}'`
// signs the request with the demo app's secret from dev.json and prints
// the answer.
func runAPI(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("api", flag.ContinueOnError)
	dir := fs.String("dir", ".longlink", "`directory` of longlink dev (the app secret is in dev.json)")
	server := fs.String("server", "", "server HTTP API base `URL` (default: where longlink dev in -dir serves it, else http://127.0.0.1:7712)")
	appkey := fs.String("appkey", "", "sign as this `appkey` (with -secret) instead of longlink dev's demo app")
	secret := fs.String("secret", "", "the app's `secret` for -appkey: file:/path, env:NAME or the value")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: longlink api [-dir D | -appkey K -secret S] [-server URL] METHOD PATH [JSON BODY]")
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
	key, sec := *appkey, ""
	if key != "" {
		var err error
		if sec, err = config.ResolveSecret(*secret); err != nil || sec == "" {
			return fmt.Errorf("-secret: %v (required with -appkey)", err)
		}
	} else {
		var err error
		if key, sec, err = devApp(*dir); err != nil {
			return err
		}
	}
	*server = devServerAPI(*dir, *server)
	out, status, err := signedAPI(ctx, *server, key, sec, fs.Arg(0), fs.Arg(1), body)
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
	key, secret, err := devApp(dir)
	if err != nil {
		return nil, 0, err
	}
	return signedAPI(ctx, devServerAPI(dir, server), key, secret, method, path, body)
}

// devServerAPI is server when set, else the server API address that
// `longlink dev` in dir recorded (it moves with -port-base), else the
// default port.
func devServerAPI(dir, server string) string {
	if server != "" {
		return server
	}
	if st, err := readDevState(dir); err == nil && st.ServerAPI != "" {
		return "http://" + st.ServerAPI
	}
	return "http://127.0.0.1:7712"
}

// devApp is the demo app of `longlink dev` in dir and its secret.
func devApp(dir string) (appkey, secret string, err error) {
	st, err := readDevState(dir)
	if err != nil {
		return "", "", err
	}
	return devAppKey, st.AppSecret, nil
}

// readDevState reads dev.json of the `longlink dev` in dir.
func readDevState(dir string) (*devState, error) {
	b, err := os.ReadFile(filepath.Join(dir, "dev.json"))
	if err != nil {
		return nil, fmt.Errorf("%w (start `longlink dev` first, or give -appkey and -secret)", err)
	}
	var st devState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "dev.json"), err)
	}
	return &st, nil
}

// signedAPI makes one server API call signed as appkey with secret and
// returns the answer's body and status.
func signedAPI(ctx context.Context, server, appkey, secret, method, path string, body []byte) ([]byte, int, error) {
	req, err := http.NewRequestWithContext(ctx, strings.ToUpper(method), strings.TrimSuffix(server, "/")+path, bytes.NewReader(body))
	if err != nil {
		return nil, 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	serverapi.Sign(req, appkey, secret, "cli-"+randomHex(12), time.Now(), body)
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
