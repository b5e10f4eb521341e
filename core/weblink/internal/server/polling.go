package server

import (
	"io"
	"net/http"
	"strconv"

	"github.com/longlink/longlink/core/weblink/internal/eio"
)

func (s *Server) servePollingHandshake(w http.ResponseWriter, r *http.Request) {
	ss := s.newSession(clientIP(r))
	if !s.register(ss) {
		http.Error(w, "server full", http.StatusServiceUnavailable)
		return
	}
	s.m.handshakes.WithLabelValues("polling").Inc()
	ss.start()
	writePoll(w, eio.AppendPayload(nil, s.openPacket(ss.sid, true)))
}

func writePoll(w http.ResponseWriter, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=UTF-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

func (ss *session) servePolling(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		ss.servePoll(w, r)
	case http.MethodPost:
		ss.serveData(w, r)
	default:
		w.WriteHeader(http.StatusInternalServerError)
	}
}

// servePoll answers a long-polling GET with what is queued, or waits for it.
func (ss *session) servePoll(w http.ResponseWriter, r *http.Request) {
	ss.mu.Lock()
	switch {
	case ss.state == stateClosed:
		ss.mu.Unlock()
		abortRequest(w, ErrUnknownSID)
		return
	case ss.ws != nil:
		ss.mu.Unlock()
		abortRequest(w, ErrBadRequest)
		return
	case ss.poll != nil:
		ss.mu.Unlock()
		w.WriteHeader(http.StatusBadRequest)
		ss.close("transport error", closeByServer)
		return
	case ss.state == stateClosing:
		body := ss.takeQueueLocked()
		body = eio.AppendPayload(body, eio.Packet{Type: eio.Close})
		ss.mu.Unlock()
		writePoll(w, body)
		ss.close("forced close", closeByServer)
		return
	case len(ss.queue) > 0:
		body := ss.takeQueueLocked()
		ss.mu.Unlock()
		writePoll(w, body)
		return
	case ss.probe != nil:
		// An upgrade is under way: end the poll so that the client can finish it.
		ss.mu.Unlock()
		writePoll(w, eio.AppendPayload(nil, eio.Packet{Type: eio.Noop}))
		return
	}
	p := &pollReq{ch: make(chan pollResult, 1)}
	ss.poll = p
	ss.mu.Unlock()
	select {
	case res := <-p.ch:
		writePoll(w, res.body)
	case <-r.Context().Done():
		ss.mu.Lock()
		mine := ss.poll == p
		if mine {
			ss.poll = nil
		}
		ss.mu.Unlock()
		if mine {
			// The reference closes the session when a poll is cancelled.
			ss.close("transport error", closeByServer)
		}
	}
}

// serveData handles a POST carrying a payload from the client.
func (ss *session) serveData(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Content-Type") == "application/octet-stream" {
		// Protocol v4 sends binary base64-encoded in text payloads only.
		w.WriteHeader(http.StatusBadRequest)
		ss.close("transport error", closeByServer)
		return
	}
	ss.mu.Lock()
	if ss.posting {
		ss.mu.Unlock()
		w.WriteHeader(http.StatusBadRequest)
		ss.close("transport error", closeByServer)
		return
	}
	ss.posting = true
	ss.mu.Unlock()
	defer func() {
		ss.mu.Lock()
		ss.posting = false
		ss.mu.Unlock()
	}()
	max := ss.srv.cfg.MaxPayload
	body, err := io.ReadAll(io.LimitReader(r.Body, int64(max)+1))
	if err != nil {
		ss.close("transport error", closeByServer)
		return
	}
	if len(body) > max {
		ss.srv.m.tooLarge.Inc()
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		return
	}
	pkts, perr := eio.DecodePayload(body)
	for _, p := range pkts {
		ss.onPacket(p)
	}
	if perr != nil {
		ss.srv.m.parseErrors.WithLabelValues("eio").Inc()
		w.WriteHeader(http.StatusBadRequest)
		ss.close("parse error", closeByServer)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html")
	h.Set("Content-Length", "2")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte("ok"))
}
