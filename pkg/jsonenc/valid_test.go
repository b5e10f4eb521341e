package jsonenc

import (
	"encoding/json"
	"strings"
	"testing"
)

var validSeeds = []string{
	``, ` `, `null`, `true`, `false`, `nul`, `truex`, `0`, `-0`, `01`, `-`, `1.`, `1.5`, `1e5`, `1E+5`, `1e-`, `.5`, `-1.5e-3`,
	`""`, `"a"`, `"\"\\\/\b\f\n\r\t"`, `"\u00e9\uD83D\uDE00"`, `"\u12"`, `"\x"`, "\"\x01\"", "\"\x7f\xff\"", `"`, `"\`,
	`{}`, `[]`, ` { } `, `{"a":1}`, `{"a":1,}`, `{"a" 1}`, `{a:1}`, `{"a":1 "b":2}`, `[1,2]`, `[1,]`, `[,1]`, `[1 2]`,
	`{"a":[1,{"b":null}],"c":"d"}`, `[[[]]]`, `[[[]]`, `[]]`, `{}}`, `{"a":{}`, `1 2`, "\t[\n1\r]\n", `{"":""}`,
	`{"sends":[{"conv_type":1,"to":"u2","body":{"t":1765130000123}}]}`,
}

func sameValid(t *testing.T, data []byte) {
	t.Helper()
	if got, want := Valid(data), json.Valid(data); got != want {
		t.Fatalf("Valid(%q) = %v, encoding/json says %v", data, got, want)
	}
}

func TestValidAsEncodingJSON(t *testing.T) {
	for _, s := range validSeeds {
		sameValid(t, []byte(s))
	}
	for _, depth := range []int{maxDepth - 1, maxDepth, maxDepth + 1} {
		sameValid(t, []byte(strings.Repeat("[", depth)+strings.Repeat("]", depth)))
		sameValid(t, []byte(strings.Repeat(`{"a":`, depth)+"1"+strings.Repeat("}", depth)))
	}
}

// FuzzValid: Valid answers as encoding/json.Valid does.
func FuzzValid(f *testing.F) {
	for _, s := range validSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(sameValid)
}

var envelope = []byte(`{"op":{"Service":2,"Command":2},"body":{"msg_id":"01JF3Z8Q2W4K7M9P1R3T5V7X9Z","conv_id":"p2p:u1:u101","conv_type":1,"from":"u1","from_device":"phone","to":"u101","seq":1234,"client_msg_id":"16859037274-71745","type":"custom","body":{"t":16859037274},"time":1765130000123},"except_session":"4e16385d100a325a7a2362c9c1c55a4e"}`)

func BenchmarkValid(b *testing.B) {
	b.SetBytes(int64(len(envelope)))
	for b.Loop() {
		if !Valid(envelope) {
			b.Fatal("invalid")
		}
	}
}

func BenchmarkValidEncodingJSON(b *testing.B) {
	b.SetBytes(int64(len(envelope)))
	for b.Loop() {
		if !json.Valid(envelope) {
			b.Fatal("invalid")
		}
	}
}
