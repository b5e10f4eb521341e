package link

import (
	"bytes"
	"crypto/ecdh"
	"io"

	"github.com/flynn/noise"
)

// x25519DH is Noise's "25519" DH function for one handshake, over
// crypto/ecdh with each private key parsed once. noise.DH25519 goes
// through x/crypto's curve25519.X25519, which parses the private key for
// every call, and parsing computes its public key: every DH and every key
// generation cost two scalar multiplications instead of one, and a
// server's NK handshake six instead of three (most of a login's CPU in a
// reconnect storm). Same function, same name: peers using noise.DH25519
// interoperate.
type x25519DH struct {
	static *ecdh.PrivateKey // the server's static key (nil on a client)
	eph    *ecdh.PrivateKey // the ephemeral key this handshake generated
}

func (d *x25519DH) GenerateKeypair(rng io.Reader) (noise.DHKey, error) {
	k, err := ecdh.X25519().GenerateKey(rng)
	if err != nil {
		return noise.DHKey{}, err
	}
	d.eph = k
	return noise.DHKey{Private: k.Bytes(), Public: k.PublicKey().Bytes()}, nil
}

func (d *x25519DH) DH(privkey, pubkey []byte) ([]byte, error) {
	var k *ecdh.PrivateKey
	switch {
	case d.eph != nil && bytes.Equal(privkey, d.eph.Bytes()):
		k = d.eph
	case d.static != nil && bytes.Equal(privkey, d.static.Bytes()):
		k = d.static
	default:
		var err error
		if k, err = ecdh.X25519().NewPrivateKey(privkey); err != nil {
			return nil, err
		}
	}
	pub, err := ecdh.X25519().NewPublicKey(pubkey)
	if err != nil {
		return nil, err
	}
	return k.ECDH(pub) // an all-zero result (a low-order point) is an error, as with noise.DH25519
}

func (d *x25519DH) DHLen() int     { return 32 }
func (d *x25519DH) DHName() string { return "25519" }

// handshakeSuite is the Noise cipher suite of one handshake (static: the
// server's parsed static key, or nil).
func handshakeSuite(static *ecdh.PrivateKey) noise.CipherSuite {
	return noise.NewCipherSuite(&x25519DH{static: static}, noise.CipherChaChaPoly, noise.HashBLAKE2s)
}
