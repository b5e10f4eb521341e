package imapi

import (
	"encoding/json"
	"strings"
)

// SetLoginSessionID returns the LoginReq body with its session_id set to
// sid, or removed when sid is empty; the other fields stay as the client
// wrote them. Every spelling that encoding/json would take for the field
// (it matches keys case-insensitively) is removed first, so a client cannot
// slip its own session id past an edge or a gateway.
func SetLoginSessionID(body []byte, sid string) ([]byte, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		return nil, err
	}
	for k := range fields {
		if strings.EqualFold(k, "session_id") {
			delete(fields, k)
		}
	}
	if sid != "" {
		fields["session_id"], _ = json.Marshal(sid)
	}
	return json.Marshal(fields)
}
