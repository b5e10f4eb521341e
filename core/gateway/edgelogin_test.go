package gateway

import (
	"encoding/json"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"github.com/longlink/longlink/core/imapi"

	"github.com/longlink/longlink/core/internal/buswire"
	"github.com/longlink/longlink/core/link"
)

// TestEdgeAnsweredLogin: on the pre-terminated listener a login may carry
// the session id its edge already gave the client, and the requests the
// client pipelined behind the login are served after it; pushes wait for
// the login answer, so the edge sees that answer first. On the client
// listener a session_id is dropped.
func TestEdgeAnsweredLogin(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.TrustedProxies = []string{"127.0.0.0/8"}
		c.PlainListen = "127.0.0.1:0"
	})
	sid := strings.Repeat("5e", 16)

	// A client may not choose its session id.
	direct := e.dial(t)
	seq := direct.request(imapi.OpLogin, imapi.LoginReq{AppKey: "app", Account: "zoe", Token: "tok-zoe", SessionID: sid})
	if f, _ := direct.response(seq); f.Code != imapi.OK || strings.Contains(string(f.Body), sid) {
		t.Fatalf("direct login: code %d body %s", f.Code, f.Body)
	}
	e.svc.mu.Lock()
	got := e.svc.lastSessionReq
	e.svc.mu.Unlock()
	if got != "" {
		t.Fatalf("the login service got session_id %q from a client connection", got)
	}

	// Pushes for pat flow all the time while pat logs in slowly.
	pub := connectNATS(t, e.ns)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		msg := mustJSON(buswire.Push{Op: imapi.OpPush, Body: mustJSON(imapi.Message{MsgID: "flood", From: "bob", To: "pat"})})
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
				_ = pub.Publish(buswire.UserSubject("app", "pat"), msg)
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	e.svc.mu.Lock()
	e.svc.delay = 150 * time.Millisecond
	e.svc.mu.Unlock()

	nc, err := net.Dial("tcp", e.g.PlainAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	h := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.ParseIP("203.0.113.9"), Port: 5555},
		&net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 7712})
	if _, err := h.WriteTo(nc); err != nil {
		t.Fatal(err)
	}
	pat := &client{t: t, c: link.NewPlain(nc, link.Limits{})}
	// The edge writes the login and, having answered it, the client's next
	// requests, without waiting for the gateway.
	login := pat.request(imapi.OpLogin, imapi.LoginReq{AppKey: "app", Account: "pat", Token: "tok-pat", DeviceType: "phone", SessionID: sid})
	send := pat.request(imapi.OpSend, imapi.SendReq{ConvType: imapi.ConvP2P, To: "bob", ClientMsgID: "c1", Type: "text", Body: json.RawMessage(`"hi"`)})
	hb := pat.request(imapi.OpHeartbeat, nil)

	first := pat.read()
	if !first.IsResponse() || first.Seq != login || first.Code != imapi.OK {
		t.Fatalf("first frame: op %v seq %d code %d push %v, want the login answer", first.Op, first.Seq, first.Code, first.IsPush())
	}
	var lr imapi.LoginResp
	if err := json.Unmarshal(first.Body, &lr); err != nil || lr.SessionID != sid {
		t.Fatalf("login answer %s: session is not the edge's", first.Body)
	}
	// The gateway answers heartbeats itself, so the two answers may come
	// in either order.
	pushes := 0
	for want := map[uint32]bool{send: true, hb: true}; len(want) > 0; {
		f := pat.read()
		switch {
		case f.IsPush():
			pushes++
		case want[f.Seq]:
			if f.Code != imapi.OK {
				t.Fatalf("pipelined request %d: code %d %s", f.Seq, f.Code, f.Body)
			}
			delete(want, f.Seq)
		default:
			t.Fatalf("unexpected frame seq %d", f.Seq)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for pushes == 0 && time.Now().Before(deadline) {
		if f := pat.read(); f.IsPush() {
			pushes++
		}
	}
	if pushes == 0 {
		t.Fatal("no push reached the session: the test proved nothing about held pushes")
	}
}
