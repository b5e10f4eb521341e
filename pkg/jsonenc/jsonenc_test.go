package jsonenc

import (
	"bytes"
	"encoding/json"
	"testing"
)

var seeds = []string{
	"", "plain", `q"uote`, `back\slash`, "<script>&amp;</script>", "a\nb\tc\rd\be\ff", "\x00\x01\x1f\x7f",
	"café ☃ 😀", "\u2028\u2029", "bad\xffutf8\xc3", "\xed\xa0\x80", "é\xe2\x82",
}

func same(t *testing.T, s string) {
	t.Helper()
	want, _ := json.Marshal(s)
	if got := AppendString(nil, s); !bytes.Equal(got, want) {
		t.Fatalf("AppendString(%q) = %s, json.Marshal = %s", s, got, want)
	}
}

func TestAppendStringAsMarshal(t *testing.T) {
	for _, s := range seeds {
		same(t, s)
	}
	if got := AppendString([]byte("x:"), "y"); string(got) != `x:"y"` {
		t.Fatalf("appends to its argument: %s", got)
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(same)
}
