package link

import (
	"bytes"
	"testing"

	"github.com/flynn/noise"
)

// TestSealerMatchesNoise: frames sealed by a sealer open with Noise's own
// CipherState of the same key and nonce, and the other way round, so a
// connection's peer may still use flynn/noise's cipher states (clients
// built before the sealer).
func TestSealerMatchesNoise(t *testing.T) {
	suite := noise.NewCipherSuite(noise.DH25519, noise.CipherChaChaPoly, noise.HashBLAKE2s)
	var k [32]byte
	for i := range k {
		k[i] = byte(i * 7)
	}
	const start = 1<<32 - 2 // the counter's bytes past the first four
	s, err := newSealer(noise.UnsafeNewCipherState(suite, k, start))
	if err != nil {
		t.Fatal(err)
	}
	theirs := noise.UnsafeNewCipherState(suite, k, start)
	for i := range 4 {
		pt := bytes.Repeat([]byte{byte('a' + i)}, 10+i*100)
		ct, err := s.seal(nil, pt)
		if err != nil {
			t.Fatal(err)
		}
		got, err := theirs.Decrypt(nil, nil, ct)
		if err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("frame %d: noise could not open the sealer's frame: %v", i, err)
		}
	}
	// And back: Noise seals, the sealer opens; a tampered frame fails and
	// leaves the nonce where it was.
	back, err := newSealer(noise.UnsafeNewCipherState(suite, k, start))
	if err != nil {
		t.Fatal(err)
	}
	sender := noise.UnsafeNewCipherState(suite, k, start)
	for i := range 3 {
		pt := []byte{byte(i), 1, 2, 3}
		ct, err := sender.Encrypt(nil, nil, pt)
		if err != nil {
			t.Fatal(err)
		}
		bad := append([]byte(nil), ct...)
		bad[0] ^= 1
		if _, err := back.open(nil, bad); err == nil {
			t.Fatalf("frame %d: a tampered frame opened", i)
		}
		got, err := back.open(nil, ct)
		if err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("frame %d: the sealer could not open noise's frame: %v", i, err)
		}
	}
	// The last nonce is refused, as Noise refuses it.
	s.setCounter(noise.MaxNonce + 1)
	if _, err := s.seal(nil, []byte("x")); err != noise.ErrMaxNonce {
		t.Fatalf("sealing past the last nonce: %v", err)
	}
}
