package group

import (
	"encoding/json"
	"testing"

	"github.com/longlink/longlink/core/imapi"
)

// FuzzGroupUpdate: group.update bodies come from clients. Whatever the
// bytes, validation answers without panicking, and what it accepts is
// within the limits.
func FuzzGroupUpdate(f *testing.F) {
	for _, s := range []string{
		`{"group_id":"g1","name":"x","avatar":"https://a/b"}`, `{"anyone_updates":true}`, `{"announcement":"\xff"}`,
		`{"conv_id":"g:team","account":"x"}`, `{"invite_mode":"managers"}`, `{"invite_mode":"nobody"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var g imapi.GroupUpdateReq
		if json.Unmarshal(body, &g) != nil {
			return
		}
		upd, err := validUpdate(&g)
		if err != nil {
			if _, ok := err.(*imapi.Error); !ok {
				t.Fatalf("error %v is not an *imapi.Error", err)
			}
			return
		}
		if upd.Name != nil && len(*upd.Name) > imapi.MaxGroupName || upd.Announcement != nil && len(*upd.Announcement) > imapi.MaxGroupAnnouncement {
			t.Fatalf("group update %s accepted", body)
		}
		if upd.InviteMode != nil && !validInviteMode(*upd.InviteMode) {
			t.Fatalf("invite mode %q accepted", *upd.InviteMode)
		}
	})
}
