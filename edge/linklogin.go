package edge

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"sync/atomic"
	"time"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/link"
	"github.com/longlink/longlink/core/logintoken"
)

// edgeLogins answers terminated-Link logins whose signed token verifies,
// without waiting for the core (LINK.md section 7). The core still gets the
// login, with the session id chosen here, and stays the authority: when it
// refuses, the client is kicked with the core's code.
type edgeLogins struct {
	tokens *logintoken.Verifier
	now    func() time.Time
	// heartbeatSec is the heartbeat_sec of the latest login answer from the
	// core; 0 until one was seen, and logins are forwarded until then (the
	// interval is the gateways' to choose, not the edge's).
	heartbeatSec atomic.Int64
}

// answer decides whether the edge answers the login frame f itself. When it
// does, it returns the frame to forward (f with the edge's session id), the
// answer for the client and "answered"; otherwise f as it came, nil, and
// why it is forwarded (a longlink_edge_link_logins_total result).
func (l *edgeLogins) answer(f link.Frame) (link.Frame, *link.Frame, string) {
	if f.Op != imapi.OpLogin || f.IsResponse() || f.IsPush() {
		return withoutSessionID(f), nil, "forwarded_invalid" // the gateway refuses it
	}
	var req imapi.LoginReq
	if err := json.Unmarshal(f.Body, &req); err != nil {
		return withoutSessionID(f), nil, "forwarded_invalid"
	}
	if !logintoken.IsSigned(req.Token) {
		return withoutSessionID(f), nil, "forwarded_opaque"
	}
	now := l.now()
	claims, err := l.tokens.Verify(req.Token, now)
	switch {
	case errors.Is(err, logintoken.ErrUnknownKey):
		return withoutSessionID(f), nil, "forwarded_unknown_key"
	case errors.Is(err, logintoken.ErrExpired):
		return withoutSessionID(f), nil, "forwarded_expired"
	case err != nil, claims.AppKey != req.AppKey, claims.Account != req.Account:
		return withoutSessionID(f), nil, "forwarded_invalid"
	}
	hb := l.heartbeatSec.Load()
	if hb <= 0 {
		return withoutSessionID(f), nil, "forwarded_not_ready"
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	sid := hex.EncodeToString(b[:])
	// The rest of the request goes to the core as the client wrote it.
	body, err := imapi.SetLoginSessionID(f.Body, sid)
	if err != nil {
		return withoutSessionID(f), nil, "forwarded_invalid"
	}
	resp, _ := json.Marshal(imapi.LoginResp{SessionID: sid, ServerTime: now.UnixMilli(), HeartbeatSec: int(hb)})
	out := f
	out.Body = body
	return out, &link.Frame{Op: imapi.OpLogin, Flags: link.FlagResponse, Seq: f.Seq, Body: resp}, "answered"
}

// withoutSessionID removes any session_id a client put in its login: the
// gateway honours the field on this path, and only the edge may choose it.
// A body that is not a JSON object goes as it is (the core refuses it).
func withoutSessionID(f link.Frame) link.Frame {
	if f.Op != imapi.OpLogin {
		return f
	}
	if body, err := imapi.SetLoginSessionID(f.Body, ""); err == nil {
		f.Body = body
	}
	return f
}

// learn keeps the heartbeat interval of a successful login answer from the
// core.
func (l *edgeLogins) learn(body []byte) {
	var resp imapi.LoginResp
	if json.Unmarshal(body, &resp) == nil && resp.HeartbeatSec > 0 {
		l.heartbeatSec.Store(int64(resp.HeartbeatSec))
	}
}

// kickClient tells the client why its session ends (a kick push, as a
// gateway sends it).
func kickClient(lc *link.Conn, code imapi.Code, reason string) {
	body, _ := json.Marshal(imapi.Kick{Code: code, Reason: reason})
	_ = lc.NetConn().SetWriteDeadline(time.Now().Add(time.Second))
	_ = lc.WriteFrame(link.Frame{Op: imapi.OpKick, Flags: link.FlagPush, Body: body})
}

// refusalReason is the message of a core's error answer (an imapi.Error
// body), or the code's text.
func refusalReason(f link.Frame) string {
	var e imapi.Error
	if json.Unmarshal(f.Body, &e) == nil && e.Message != "" {
		return e.Message
	}
	return f.Code.String()
}
