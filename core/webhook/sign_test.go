package webhook

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestSignVerify(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{"id":"e1"}`)
	h := Sign("s3cret-s3cret-s3cret", now, body)
	if err := VerifyAt("s3cret-s3cret-s3cret", h, body, now.Add(time.Minute), Tolerance); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		secret string
		header string
		body   string
		now    time.Time
		want   error
	}{
		{"wrong secret", "other-secret-xxxxxx", h, string(body), now, ErrBadSignature},
		{"tampered body", "s3cret-s3cret-s3cret", h, `{"id":"e2"}`, now, ErrBadSignature},
		{"stale", "s3cret-s3cret-s3cret", h, string(body), now.Add(10 * time.Minute), ErrStaleSignature},
		{"empty", "s3cret-s3cret-s3cret", "", string(body), now, ErrMalformedSignature},
		{"no v1", "s3cret-s3cret-s3cret", "t=" + strconv.FormatInt(now.Unix(), 10), string(body), now, ErrMalformedSignature},
		{"short mac", "s3cret-s3cret-s3cret", "t=1,v1=abcd", string(body), now, ErrMalformedSignature},
		{"two t", "s3cret-s3cret-s3cret", "t=1," + h, string(body), now, ErrMalformedSignature},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := VerifyAt(tc.secret, tc.header, []byte(tc.body), tc.now, Tolerance); !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
		})
	}
	// A rotation header with the old and the new signature verifies.
	rot := h + ",v1=" + Sign("new-secret-new-secret", now, body)[len("t=1800000000,v1="):]
	if err := VerifyAt("new-secret-new-secret", rot, body, now, Tolerance); err != nil {
		t.Fatalf("rotation: %v", err)
	}
}

func FuzzVerify(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{"id":"e1","kind":"message"}`)
	f.Add(Sign("fuzz-secret-0123456", now, body), body)
	f.Add("t=1800000000,v1=00", []byte("x"))
	f.Add("t=,v1=", []byte{})
	f.Add("v1=zz,t=-1", []byte("{}"))
	f.Add("t=1800000000,v1="+string(make([]byte, 64)), body)
	f.Fuzz(func(t *testing.T, header string, b []byte) {
		err := VerifyAt("fuzz-secret-0123456", header, b, now, Tolerance)
		if err == nil {
			// Accepted only if the header carries the real MAC of b at
			// its timestamp: recompute it and compare.
			want := Sign("fuzz-secret-0123456", now, b)
			if !containsMAC(header, want[len("t=1800000000,v1="):]) {
				// The timestamp may differ within the tolerance.
				ok := false
				for d := -Tolerance; d <= Tolerance; d += time.Second {
					w := Sign("fuzz-secret-0123456", now.Add(d), b)
					if containsMAC(header, w[len("t=1800000000,v1="):]) {
						ok = true
						break
					}
				}
				if !ok {
					t.Fatalf("accepted a header without the body's MAC: %q", header)
				}
			}
		} else if !errors.Is(err, ErrMalformedSignature) && !errors.Is(err, ErrBadSignature) && !errors.Is(err, ErrStaleSignature) {
			t.Fatalf("unexpected error %v", err)
		}
	})
}

func containsMAC(header, mac string) bool {
	return strings.Contains(strings.ToLower(header), mac)
}
