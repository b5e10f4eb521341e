// Package lbsclient is the SDK's side of the LBS: it asks the LBS which entry
// points to use and keeps working when the LBS does not answer.
//
//   - A persisted last-good answer is used at once and refreshed in the
//     background.
//   - Queries race up to three LBS addresses with staggered starts, starting
//     from a different one of the bootstrap list each time (rotation).
//   - When no LBS answers and nothing is cached, the configured default link
//     is returned (Answer.Source "default"); without one, ErrLBSUnreachable.
//   - Connect races the answer's candidates the same way and reports
//     ErrNoEntryPointReachable when none accepts.
package lbsclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/longlink/longlink/lbs/lbsapi"
	"github.com/longlink/longlink/pkg/logging"
)

// Sentinel errors the SDK branches on.
var (
	// ErrLBSUnreachable: no LBS address answered, nothing was cached and no
	// default link is configured.
	ErrLBSUnreachable = errors.New("lbs unreachable")
	// ErrNoEntryPointReachable: the LBS (or cache, or default) gave entry
	// points but none of them accepted a connection.
	ErrNoEntryPointReachable = errors.New("no entry point reachable")
)

// Config of the SDK's LBS client.
type Config struct {
	// Servers is the bootstrap list of LBS client URLs (http://host:7700).
	Servers  []string
	AppKey   string
	Env      string
	SDK      string // the SDK's version
	Platform string
	// SigningSecret signs queries for apps that require it.
	SigningSecret string
	// CacheFile persists the last good answer ("" keeps it in memory only).
	CacheFile string
	// MaxCacheAge: an older cached answer is not used. 0 means 7 days.
	MaxCacheAge time.Duration
	// DefaultLink (host:port) is used when no LBS answers and nothing is cached.
	DefaultLink string
	// Timeout per LBS attempt. 0 means 3s.
	Timeout time.Duration
	// Stagger between racing attempts. 0 means 250ms.
	Stagger time.Duration
	// Race is how many attempts run at once at most. 0 means 3.
	Race int
}

// Client resolves entry points. Safe for concurrent use.
type Client struct {
	cfg  Config
	hc   *http.Client
	log  *slog.Logger
	next atomic.Int64

	mu         sync.Mutex
	last       *lbsapi.Answer
	lastAt     time.Time
	refreshAt  time.Time // lastAt + the answer's TTL × [0.75, 1), jittered
	refreshing bool
	wg         sync.WaitGroup
}

// New builds a client and loads the persisted answer, if any.
func New(cfg Config, hc *http.Client, log *slog.Logger) (*Client, error) {
	if cfg.AppKey == "" {
		return nil, errors.New("lbsclient: appkey required")
	}
	if len(cfg.Servers) == 0 && cfg.DefaultLink == "" {
		return nil, errors.New("lbsclient: no LBS servers and no default link")
	}
	if cfg.MaxCacheAge <= 0 {
		cfg.MaxCacheAge = 7 * 24 * time.Hour
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 3 * time.Second
	}
	if cfg.Stagger <= 0 {
		cfg.Stagger = 250 * time.Millisecond
	}
	if cfg.Race <= 0 {
		cfg.Race = 3
	}
	if hc == nil {
		hc = &http.Client{}
	}
	log = logging.OrDiscard(log)
	c := &Client{cfg: cfg, hc: hc, log: log}
	c.loadCache()
	return c, nil
}

type cached struct {
	At     time.Time     `json:"at"`
	Answer lbsapi.Answer `json:"answer"`
}

func (c *Client) loadCache() {
	if c.cfg.CacheFile == "" {
		return
	}
	b, err := os.ReadFile(c.cfg.CacheFile)
	if err != nil {
		return
	}
	var cc cached
	if json.Unmarshal(b, &cc) != nil || cc.Answer.AppKey != c.cfg.AppKey {
		return
	}
	c.last, c.lastAt = &cc.Answer, cc.At
	c.refreshAt = jitteredRefresh(cc.At, cc.Answer.TTL)
}

// jitteredRefresh is when an answer fetched at `at` is refreshed: at a
// random point in the last quarter of its TTL, so that clients that got
// their answers together (a reconnect wave, an app moved to other entry
// points) do not all ask again at once, and every client has asked within
// the TTL.
func jitteredRefresh(at time.Time, ttl int) time.Time {
	d := time.Duration(ttl) * time.Second
	return at.Add(d*3/4 + time.Duration(rand.Int64N(int64(d/4)+1)))
}

func (c *Client) saveCache(a *lbsapi.Answer, at time.Time) {
	if c.cfg.CacheFile == "" {
		return
	}
	b, _ := json.Marshal(cached{At: at, Answer: *a})
	tmp := c.cfg.CacheFile + ".tmp"
	os.MkdirAll(filepath.Dir(c.cfg.CacheFile), 0o700)
	if os.WriteFile(tmp, b, 0o600) == nil {
		os.Rename(tmp, c.cfg.CacheFile)
	}
}

// Resolve returns entry points: the cached answer at once (refreshing it in
// the background when older than its TTL), else a fresh one, else the default
// link, else ErrLBSUnreachable.
func (c *Client) Resolve(ctx context.Context) (*lbsapi.Answer, error) {
	c.mu.Lock()
	last, at, refreshAt := c.last, c.lastAt, c.refreshAt
	c.mu.Unlock()
	if last != nil && time.Since(at) < c.cfg.MaxCacheAge {
		if !time.Now().Before(refreshAt) {
			c.refreshInBackground()
		}
		a := *last
		a.Source = "cache"
		return &a, nil
	}
	a, err := c.Refresh(ctx)
	if err == nil {
		return a, nil
	}
	if c.cfg.DefaultLink != "" {
		host, port, perr := net.SplitHostPort(c.cfg.DefaultLink)
		if perr == nil {
			p, _ := strconv.Atoi(port)
			return &lbsapi.Answer{AppKey: c.cfg.AppKey, Source: "default",
				Link: []lbsapi.Endpoint{{ID: "default", Host: host, Port: p, Fallback: true}}}, nil
		}
	}
	return nil, err
}

func (c *Client) refreshInBackground() {
	c.mu.Lock()
	if c.refreshing {
		c.mu.Unlock()
		return
	}
	c.refreshing = true
	c.mu.Unlock()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 3*c.cfg.Timeout)
		defer cancel()
		if _, err := c.Refresh(ctx); err != nil {
			c.log.Debug("background LBS refresh failed", "err", err)
		}
		c.mu.Lock()
		c.refreshing = false
		c.mu.Unlock()
	}()
}

// Wait waits for a background refresh (tests, shutdown).
func (c *Client) Wait() { c.wg.Wait() }

// Refresh queries the LBS now, racing up to Race addresses with staggered
// starts, and stores a good answer.
func (c *Client) Refresh(ctx context.Context) (*lbsapi.Answer, error) {
	n := len(c.cfg.Servers)
	if n == 0 {
		return nil, ErrLBSUnreachable
	}
	start := int(c.next.Add(1)-1) % n
	order := make([]string, n)
	for i := range n {
		order[i] = c.cfg.Servers[(start+i)%n]
	}
	a, err := race(ctx, order, c.cfg.Race, c.cfg.Stagger, func(ctx context.Context, base string) (*lbsapi.Answer, error) {
		return c.fetch(ctx, base)
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrLBSUnreachable, err)
	}
	now := time.Now()
	c.mu.Lock()
	c.last, c.lastAt, c.refreshAt = a, now, jitteredRefresh(now, a.TTL)
	c.mu.Unlock()
	c.saveCache(a, now)
	out := *a
	out.Source = "lbs"
	return &out, nil
}

// race runs f over items, starting a new attempt every stagger (or at once
// when one fails), at most max at a time, and returns the first success.
func race[T, R any](ctx context.Context, items []T, max int, stagger time.Duration, f func(context.Context, T) (R, error)) (R, error) {
	var zero R
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		r   R
		err error
	}
	results := make(chan result, len(items))
	next, running := 0, 0
	var errs []error
	launch := func() {
		it := items[next]
		next++
		running++
		go func() {
			r, err := f(ctx, it)
			results <- result{r, err}
		}()
	}
	launch()
	timer := time.NewTimer(stagger)
	defer timer.Stop()
	for running > 0 {
		select {
		case res := <-results:
			running--
			if res.err == nil {
				return res.r, nil
			}
			errs = append(errs, res.err)
			if next < len(items) && running < max {
				launch()
				timer.Reset(stagger)
			}
		case <-timer.C:
			if next < len(items) && running < max {
				launch()
				timer.Reset(stagger)
			}
		case <-ctx.Done():
			return zero, ctx.Err()
		}
	}
	return zero, errors.Join(errs...)
}

func (c *Client) fetch(ctx context.Context, base string) (*lbsapi.Answer, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	q := url.Values{"appkey": {c.cfg.AppKey}}
	for k, v := range map[string]string{"env": c.cfg.Env, "sdk": c.cfg.SDK, "platform": c.cfg.Platform} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if c.cfg.SigningSecret != "" {
		ts := strconv.FormatInt(time.Now().Unix(), 10)
		q.Set("ts", ts)
		q.Set("sig", lbsapi.Sign(c.cfg.SigningSecret, c.cfg.AppKey, c.cfg.Env, c.cfg.SDK, c.cfg.Platform, ts))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(base, "/")+lbsapi.PathQuery+"?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s: %s", base, resp.Status, strings.TrimSpace(string(b)))
	}
	var a lbsapi.Answer
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, fmt.Errorf("%s: %w", base, err)
	}
	if len(a.Link) == 0 && len(a.WebLink) == 0 {
		return nil, fmt.Errorf("%s: empty answer", base)
	}
	return &a, nil
}

// Connect races the answer's Link candidates (at most Race at once,
// staggered) with dial and returns the first connection and its endpoint.
func (c *Client) Connect(ctx context.Context, a *lbsapi.Answer, dial func(ctx context.Context, addr string) (net.Conn, error)) (net.Conn, lbsapi.Endpoint, error) {
	type won struct {
		conn net.Conn
		ep   lbsapi.Endpoint
	}
	if len(a.Link) == 0 {
		return nil, lbsapi.Endpoint{}, ErrNoEntryPointReachable
	}
	var mu sync.Mutex
	var winner *won
	w, err := race(ctx, a.Link, c.cfg.Race, c.cfg.Stagger, func(ctx context.Context, ep lbsapi.Endpoint) (*won, error) {
		conn, err := dial(ctx, net.JoinHostPort(ep.Host, strconv.Itoa(ep.Port)))
		if err != nil {
			return nil, err
		}
		mu.Lock()
		defer mu.Unlock()
		if winner != nil { // a slower loser: close it
			conn.Close()
			return nil, errors.New("lost the race")
		}
		winner = &won{conn, ep}
		return winner, nil
	})
	if err != nil {
		return nil, lbsapi.Endpoint{}, fmt.Errorf("%w: %v", ErrNoEntryPointReachable, err)
	}
	return w.conn, w.ep, nil
}

// EndpointID returns the id of the Link entry point at addr (host:port) in
// the last answer, if it lists one.
func (c *Client) EndpointID(addr string) (string, bool) {
	c.mu.Lock()
	last := c.last
	c.mu.Unlock()
	if last == nil {
		return "", false
	}
	for _, ep := range last.Link {
		if ep.Host != "" && ep.Port != 0 && net.JoinHostPort(ep.Host, strconv.Itoa(ep.Port)) == addr {
			return ep.ID, true
		}
	}
	return "", false
}

// Report posts what the SDK measured during a connect (POST /v1/rum),
// signed when the app has a signing secret, to the first LBS address that
// answers; a refusal (4xx) is not retried elsewhere.
func (c *Client) Report(ctx context.Context, rep lbsapi.Report) error {
	if len(rep.Attempts) == 0 {
		return nil
	}
	if len(rep.Attempts) > lbsapi.MaxReportAttempts {
		rep.Attempts = rep.Attempts[:lbsapi.MaxReportAttempts]
	}
	if rep.SDK == "" {
		rep.SDK = c.cfg.SDK
	}
	if rep.Platform == "" {
		rep.Platform = c.cfg.Platform
	}
	body, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	if len(body) > lbsapi.MaxReportBytes {
		return fmt.Errorf("lbsclient: report of %d bytes is over %d", len(body), lbsapi.MaxReportBytes)
	}
	n := len(c.cfg.Servers)
	if n == 0 {
		return ErrLBSUnreachable
	}
	start := int(c.next.Add(1)-1) % n
	var errs []error
	for i := range n {
		base := c.cfg.Servers[(start+i)%n]
		err := c.post(ctx, base, body)
		if err == nil {
			return nil
		}
		errs = append(errs, err)
		var re *reportRefused
		if errors.As(err, &re) || ctx.Err() != nil {
			break
		}
	}
	return errors.Join(errs...)
}

// reportRefused is an LBS's 4xx answer to a report: another member would
// refuse it too.
type reportRefused struct {
	base, status string
}

func (e *reportRefused) Error() string { return e.base + ": report refused: " + e.status }

func (c *Client) post(ctx context.Context, base string, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	q := url.Values{"appkey": {c.cfg.AppKey}}
	if c.cfg.SigningSecret != "" {
		ts := strconv.FormatInt(time.Now().Unix(), 10)
		q.Set("ts", ts)
		q.Set("sig", lbsapi.SignReport(c.cfg.SigningSecret, c.cfg.AppKey, ts, body))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(base, "/")+lbsapi.PathReport+"?"+q.Encode(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	switch {
	case resp.StatusCode/100 == 2:
		return nil
	case resp.StatusCode/100 == 4:
		return &reportRefused{base, resp.Status}
	default:
		return fmt.Errorf("%s: report: %s", base, resp.Status)
	}
}
