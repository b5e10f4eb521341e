package serverapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/serverapi"
)

func TestGroupsOnBehalf(t *testing.T) {
	e := newEnv(t)
	for _, a := range []string{"alice", "bob", "carol", "dave"} {
		e.ok(http.MethodPost, "/v1/users", serverapi.UserReq{Account: a}, nil)
	}
	var g imapi.Group
	e.ok(http.MethodPost, "/v1/groups", serverapi.GroupCreateReq{Owner: "alice", Name: "team", Members: []string{"bob"}}, &g)
	if g.GroupID == "" || g.Owner != "alice" || !slices.Equal(g.Members, []string{"alice", "bob"}) {
		t.Fatalf("created %+v", g)
	}
	base := "/v1/groups/" + g.GroupID
	e.ok(http.MethodPost, base+"/members", serverapi.GroupMembersReq{As: "alice", Members: []string{"carol"}}, nil)
	var info imapi.Group
	e.ok(http.MethodGet, base+"?as=bob", nil, &info)
	if !slices.Contains(info.Members, "carol") || len(info.Members) != 3 {
		t.Fatalf("after add: %+v", info)
	}
	e.ok(http.MethodPost, base+"/members/remove", serverapi.GroupMembersReq{As: "alice", Members: []string{"bob"}}, nil)
	if status, b := e.do(http.MethodGet, base+"?as=bob", nil, nil); status == http.StatusOK {
		t.Fatalf("removed member still reads the group: %s", b)
	}
	// dave is not a member: the service refuses, the code comes through.
	if status, b := e.do(http.MethodGet, base+"?as=dave", nil, nil); status == http.StatusOK {
		t.Fatalf("non-member reads the group: %s", b)
	}
	// Only the owner dismisses.
	status, b := e.do(http.MethodPost, base+"/dismiss", serverapi.GroupActReq{As: "carol"}, nil)
	if status == http.StatusOK {
		t.Fatalf("member dismissed the group: %s", b)
	}
	if c := errCode(t, b); c != imapi.ErrForbidden {
		t.Fatalf("member dismiss: code %d %s", c, b)
	}
	e.ok(http.MethodPost, base+"/dismiss", serverapi.GroupActReq{As: "alice"}, nil)
	if status, b := e.do(http.MethodGet, base+"?as=alice", nil, nil); status != http.StatusNotFound {
		t.Fatalf("dismissed group: %d %s", status, b)
	}
	// Acting accounts must exist, be well formed and be enabled.
	for _, tc := range []struct {
		name string
		body any
		want imapi.Code
	}{
		{"unknown owner", serverapi.GroupCreateReq{Owner: "nobody", Name: "x"}, imapi.ErrNotFound},
		{"bad owner", serverapi.GroupCreateReq{Owner: "a b", Name: "x"}, imapi.ErrBadRequest},
		{"unknown member", serverapi.GroupCreateReq{Owner: "alice", Members: []string{"ghost"}}, imapi.ErrNotFound},
	} {
		status, b := e.do(http.MethodPost, "/v1/groups", tc.body, nil)
		if c := errCode(t, b); status == http.StatusOK || c != tc.want {
			t.Fatalf("%s: %d %s, want code %d", tc.name, status, b, tc.want)
		}
	}
	// A managers-only group: a member's add is 403 with code 1202; the
	// owner opens it with PATCH and the member's add goes through.
	var closed imapi.Group
	e.ok(http.MethodPost, "/v1/groups", serverapi.GroupCreateReq{Owner: "alice", Name: "closed", Members: []string{"bob"}, InviteMode: imapi.GroupInviteManagers}, &closed)
	cbase := "/v1/groups/" + closed.GroupID
	status, b = e.do(http.MethodPost, cbase+"/members", serverapi.GroupMembersReq{As: "bob", Members: []string{"carol"}}, nil)
	if c := errCode(t, b); status != http.StatusForbidden || c != imapi.ErrInviteForbidden {
		t.Fatalf("member adds to a managers-only group: %d %s", status, b)
	}
	all := imapi.GroupInviteAll
	e.ok(http.MethodPatch, cbase, serverapi.GroupUpdateReq{As: "alice", InviteMode: &all}, nil)
	e.ok(http.MethodPost, cbase+"/members", serverapi.GroupMembersReq{As: "bob", Members: []string{"carol"}}, nil)
	e.ok(http.MethodGet, cbase+"?as=carol", nil, &info)
	if info.InviteMode != imapi.GroupInviteAll || len(info.Members) != 3 {
		t.Fatalf("opened group %+v", info)
	}
	disabled := true
	e.ok(http.MethodPatch, "/v1/users/dave", serverapi.UserUpdateReq{Disabled: &disabled}, nil)
	status, b = e.do(http.MethodPost, "/v1/groups", serverapi.GroupCreateReq{Owner: "dave"}, nil)
	if c := errCode(t, b); status != http.StatusForbidden || c != imapi.ErrUserDisabled {
		t.Fatalf("disabled owner: %d %s", status, b)
	}
}

func TestBatchNotification(t *testing.T) {
	e := newEnv(t)
	for _, a := range []string{"alice", "bob"} {
		e.ok(http.MethodPost, "/v1/users", serverapi.UserReq{Account: a}, nil)
	}
	var resp serverapi.BatchNotificationResp
	e.ok(http.MethodPost, "/v1/notifications/batch", serverapi.BatchNotificationReq{
		To: []string{"alice", "bad name", "bob"}, ClientMsgID: "n1", Body: json.RawMessage(`{"text":"maintenance"}`),
	}, &resp)
	if len(resp.Results) != 3 {
		t.Fatalf("results %+v", resp)
	}
	for _, i := range []int{0, 2} {
		r := resp.Results[i]
		if r.Code != imapi.OK || r.MsgID == "" || r.Seq == 0 {
			t.Fatalf("result %d: %+v", i, r)
		}
	}
	if r := resp.Results[1]; r.To != "bad name" || r.Code == imapi.OK {
		t.Fatalf("bad account result: %+v", r)
	}
	// Each recipient's conversation holds the notification from @system.
	var hist imapi.SyncResp
	e.ok(http.MethodGet, "/v1/conversations/"+resp.Results[2].ConvID+"/messages", nil, &hist)
	if len(hist.Messages) != 1 || hist.Messages[0].From != "@system" || string(hist.Messages[0].Body) != `{"text":"maintenance"}` {
		t.Fatalf("history %+v", hist)
	}
	many := make([]string, serverapi.MaxBatchNotifications+1)
	for i := range many {
		many[i] = fmt.Sprintf("u%d", i)
	}
	status, b := e.do(http.MethodPost, "/v1/notifications/batch", serverapi.BatchNotificationReq{To: many, ClientMsgID: "n2", Body: json.RawMessage(`{}`)}, nil)
	if status != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized batch: %d %s", status, b)
	}
	status, b = e.do(http.MethodPost, "/v1/notifications/batch", serverapi.BatchNotificationReq{ClientMsgID: "n3", Body: json.RawMessage(`{}`)}, nil)
	if status != http.StatusBadRequest {
		t.Fatalf("empty batch: %d %s", status, b)
	}
}
