package link

import (
	"crypto/cipher"
	"encoding/binary"

	"github.com/flynn/noise"
	"golang.org/x/crypto/chacha20poly1305"
)

// sealer is one direction of an established connection: the ChaCha20-
// Poly1305 key that Noise's Split gave it and its counter nonce, encoded as
// Noise does (four zero bytes, then the counter little-endian). It lives
// inside Conn: the handshake's noise.CipherState (with its cipher suite, a
// boxed cipher and a copy of the key) is garbage once the handshake is
// done, and a sealed frame allocates no nonce.
type sealer struct {
	aead  cipher.AEAD
	n     uint64
	nonce [chacha20poly1305.NonceSize]byte
}

// newSealer takes over cs's key and nonce (cs is not used again).
func newSealer(cs *noise.CipherState) (sealer, error) {
	k := cs.UnsafeKey()
	a, err := chacha20poly1305.New(k[:])
	if err != nil {
		return sealer{}, err
	}
	return sealer{aead: a, n: cs.Nonce()}, nil
}

// next sets s.nonce to the current counter, or fails when it is used up.
func (s *sealer) next() error {
	if s.n > noise.MaxNonce {
		return noise.ErrMaxNonce
	}
	binary.LittleEndian.PutUint64(s.nonce[4:], s.n)
	return nil
}

// seal appends pt sealed to out and advances the nonce.
func (s *sealer) seal(out, pt []byte) ([]byte, error) {
	if err := s.next(); err != nil {
		return nil, err
	}
	out = s.aead.Seal(out, s.nonce[:], pt, nil)
	s.n++
	return out, nil
}

// open appends ct opened to out and advances the nonce; a frame that does
// not authenticate leaves it where it was.
func (s *sealer) open(out, ct []byte) ([]byte, error) {
	if err := s.next(); err != nil {
		return nil, err
	}
	out, err := s.aead.Open(out, s.nonce[:], ct, nil)
	if err != nil {
		return nil, err
	}
	s.n++
	return out, nil
}
