package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/sdk"
)

// webSessions are a worker's logged-in WebLink sessions (Socket.IO v5 over
// an Engine.IO WebSocket, through the Go SDK's transport), each with a
// goroutine that reads it and answers the server's pings.
type webSessions struct {
	mu   sync.Mutex
	held []sdk.Transport
	dial sdk.Dialer
}

func (w *webSessions) len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.held)
}

// open grows the sessions to target, logging in the accounts index,
// index+stride, … from source address src.
func (w *webSessions) open(base, src string, target, index, stride int) error {
	if w.dial == nil {
		nd := &net.Dialer{Timeout: 20 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		// One connection per session: no pooling of the handshake's
		// connection, which the WebSocket takes over.
		tr := &http.Transport{DialContext: nd.DialContext, DisableKeepAlives: true}
		w.dial = sdk.WebLinkDialer(sdk.WithWebLinkHTTPClient(&http.Client{Transport: tr}))
	}
	return openAll(w.len(), target, 32, func(i int) error {
		t, err := webLogin(w.dial, base, index+i*stride)
		if err != nil {
			return err
		}
		w.mu.Lock()
		w.held = append(w.held, t)
		w.mu.Unlock()
		go func() {
			for {
				if _, err := t.Recv(); err != nil {
					return
				}
			}
		}()
		return nil
	})
}

// webLogin opens a WebLink session and logs member u in, retrying the
// answers of an overloaded server (503, 504) as the Link members do.
func webLogin(dial sdk.Dialer, base string, u int) (sdk.Transport, error) {
	body, _ := json.Marshal(imapi.LoginReq{AppKey: benchAppKey, Account: account(u), Token: token(u),
		DeviceID: "d" + strconv.Itoa(u), DeviceType: "web", SDKVersion: "loadgen"})
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		t, err := dial(ctx, base)
		cancel()
		if err != nil {
			return nil, err
		}
		code, err := webLoginAnswer(t, body)
		switch {
		case err != nil:
			_ = t.Close()
			return nil, fmt.Errorf("weblink login %s: %w", account(u), err)
		case code == imapi.OK:
			return t, nil
		}
		_ = t.Close()
		if (code != imapi.ErrTimeout && code != imapi.ErrUnavailable) || attempt >= 5 {
			return nil, fmt.Errorf("weblink login %s: code %d", account(u), code)
		}
		time.Sleep(time.Duration(attempt) * time.Second)
	}
}

// webLoginAnswer sends the login and reads until its answer; a server that
// does not answer within 20 s has the session closed under it.
func webLoginAnswer(t sdk.Transport, body []byte) (imapi.Code, error) {
	stop := time.AfterFunc(20*time.Second, func() { _ = t.Close() })
	defer stop.Stop()
	if err := t.Send(imapi.OpLogin, 1, body); err != nil {
		return 0, err
	}
	for {
		in, err := t.Recv()
		if err != nil {
			return 0, err
		}
		if !in.Push && in.Op == imapi.OpLogin && in.Seq == 1 {
			return in.Code, nil
		}
	}
}
