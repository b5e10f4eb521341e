package link

import (
	"bytes"
	"context"
	"crypto/rand"
	"net"
	"testing"

	"github.com/flynn/noise"
)

// TestX25519DHInteroperates: an NK handshake between noise.DH25519 and
// x25519DH, each side on either, derives the same keys, so peers built on
// either interoperate; and a low-order public key is refused as by
// noise.DH25519.
func TestX25519DHInteroperates(t *testing.T) {
	std := noise.NewCipherSuite(noise.DH25519, noise.CipherChaChaPoly, noise.HashBLAKE2s)
	kp, err := GenerateKey("k")
	if err != nil {
		t.Fatal(err)
	}
	ring := NewKeyRing(kp)
	rk, _ := ring.get("k")
	for _, tc := range []struct {
		name           string
		client, server noise.CipherSuite
	}{
		{"standard client, this server", std, handshakeSuite(rk.parsed)},
		{"this client, standard server", handshakeSuite(nil), std},
		{"both this", handshakeSuite(nil), handshakeSuite(rk.parsed)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := noise.NewHandshakeState(noise.Config{CipherSuite: tc.client, Random: rand.Reader, Pattern: noise.HandshakeNK,
				Initiator: true, Prologue: []byte("p"), PeerStatic: kp.Public})
			if err != nil {
				t.Fatal(err)
			}
			s, err := noise.NewHandshakeState(noise.Config{CipherSuite: tc.server, Random: rand.Reader, Pattern: noise.HandshakeNK,
				Prologue: []byte("p"), StaticKeypair: rk.dh})
			if err != nil {
				t.Fatal(err)
			}
			m1, _, _, err := c.WriteMessage(nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, _, err := s.ReadMessage(nil, m1); err != nil {
				t.Fatal(err)
			}
			m2, sRecv, sSend, err := s.WriteMessage(nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, cSend, cRecv, err := c.ReadMessage(nil, m2)
			if err != nil {
				t.Fatal(err)
			}
			sealed, err := cSend.Encrypt(nil, nil, []byte("hello"))
			if err != nil {
				t.Fatal(err)
			}
			if got, err := sRecv.Decrypt(nil, nil, sealed); err != nil || !bytes.Equal(got, []byte("hello")) {
				t.Fatalf("server decrypt: %q %v", got, err)
			}
			back, _ := sSend.Encrypt(nil, nil, []byte("back"))
			if got, err := cRecv.Decrypt(nil, nil, back); err != nil || !bytes.Equal(got, []byte("back")) {
				t.Fatalf("client decrypt: %q %v", got, err)
			}
		})
	}
	var dh x25519DH
	if _, err := dh.DH(kp.Private, make([]byte, 32)); err == nil {
		t.Fatal("DH with the all-zero (low-order) point succeeded")
	}
}

// BenchmarkHandshake is one Link handshake over a pipe, both sides in
// this process (ns/op is their CPU together on an idle machine).
func BenchmarkHandshake(b *testing.B) {
	kp, err := GenerateKey("k")
	if err != nil {
		b.Fatal(err)
	}
	ring := NewKeyRing(kp)
	for b.Loop() {
		a, c := net.Pipe()
		done := make(chan error, 1)
		go func() { _, err := Server(context.Background(), c, ring, Limits{}); done <- err }()
		if _, err := Client(context.Background(), a, kp.ID, kp.Public, Limits{}); err != nil {
			b.Fatal(err)
		}
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		a.Close()
		c.Close()
	}
}
