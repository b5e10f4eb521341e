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
// done, and a sealed frame allocates no nonce. The counter is kept only in
// the nonce's last eight bytes: a separate copy made the Conn of every
// idle connection a size class larger.
type sealer struct {
	aead  cipher.AEAD
	nonce [chacha20poly1305.NonceSize]byte
}

// newSealer takes over cs's key and nonce (cs is not used again).
func newSealer(cs *noise.CipherState) (sealer, error) {
	k := cs.UnsafeKey()
	a, err := chacha20poly1305.New(k[:])
	if err != nil {
		return sealer{}, err
	}
	s := sealer{aead: a}
	s.setCounter(cs.Nonce())
	return s, nil
}

func (s *sealer) counter() uint64 { return binary.LittleEndian.Uint64(s.nonce[4:]) }

func (s *sealer) setCounter(n uint64) { binary.LittleEndian.PutUint64(s.nonce[4:], n) }

// next fails when the counter is used up.
func (s *sealer) next() error {
	if s.counter() > noise.MaxNonce {
		return noise.ErrMaxNonce
	}
	return nil
}

// seal appends pt sealed to out and advances the nonce.
func (s *sealer) seal(out, pt []byte) ([]byte, error) {
	if err := s.next(); err != nil {
		return nil, err
	}
	out = s.aead.Seal(out, s.nonce[:], pt, nil)
	s.setCounter(s.counter() + 1)
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
	s.setCounter(s.counter() + 1)
	return out, nil
}
