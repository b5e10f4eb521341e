package sign

import (
	"net/http"
	"strconv"
	"testing"
	"time"
)

func FuzzParse(f *testing.F) {
	const secret = "fuzz-secret-0123456789"
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	f.Add("app1", ts, "nonce-1", Checksum(secret, "POST", "/v1/users", ts, "nonce-1", []byte(`{}`)), "POST", "/v1/users", []byte(`{}`))
	f.Add("app1", "-1", "n", "00", "GET", "/", []byte(nil))
	f.Add("", "", "", "", "", "", []byte("x"))
	f.Add("a b", "99999999999999999999", "n\x00", "zz", "PATCH", "/v1/users/%00", []byte{0xff})
	f.Fuzz(func(t *testing.T, appkey, tsv, nonce, checksum, method, target string, body []byte) {
		h := http.Header{}
		h.Set(HeaderAppKey, appkey)
		h.Set(HeaderTimestamp, tsv)
		h.Set(HeaderNonce, nonce)
		h.Set(HeaderChecksum, checksum)
		a, err := Parse(h)
		if err != nil {
			return
		}
		if !ValidToken(a.AppKey, 64) || !ValidToken(a.Nonce, 64) || len(a.checksum) != 32 || a.Timestamp <= 0 {
			t.Fatalf("accepted malformed headers %+v", a)
		}
		ok := Verify(secret, method, target, a, body)
		want := Checksum(secret, method, target, tsv, nonce, body) == h.Get(HeaderChecksum)
		if ok != want {
			t.Fatalf("verify = %v, want %v", ok, want)
		}
	})
}
