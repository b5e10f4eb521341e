// Package certfiles serves TLS server certificates kept in PEM files: it
// picks one per connection by the name the client asked for (SNI) and
// reloads the files when they change, so that a renewed certificate is
// served without a restart and a broken renewal never replaces a working
// set.
package certfiles

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// Pair names a certificate chain and its private key, both PEM files.
type Pair struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Cert describes one loaded certificate.
type Cert struct {
	Pair
	Names    []string // DNS names (and IP addresses) the leaf is valid for
	NotAfter time.Time
}

// Store holds the certificates of a listener. It is safe for concurrent use.
type Store struct {
	pairs []Pair

	mu     sync.RWMutex
	set    *certSet
	digest [sha256.Size]byte // of every file's bytes, to see changes
}

// certSet is one consistent generation of certificates.
type certSet struct {
	certs  []*tls.Certificate
	info   []Cert
	exact  map[string]*tls.Certificate // lower-case DNS name → certificate
	suffix map[string]*tls.Certificate // "example.com" for "*.example.com"
}

// Load reads every pair; it fails if any of them is unreadable or invalid.
func Load(pairs []Pair) (*Store, error) {
	if len(pairs) == 0 {
		return nil, errors.New("certfiles: no certificate")
	}
	s := &Store{pairs: pairs}
	set, digest, err := s.read()
	if err != nil {
		return nil, err
	}
	s.set, s.digest = set, digest
	return s, nil
}

// Reload reads the files again. When their contents changed and all of
// them load, the new set replaces the old one (changed is true); when any
// fails, the old set stays and the error says why.
func (s *Store) Reload() (changed bool, err error) {
	raw, digest, err := s.readFiles()
	if err != nil {
		return false, err
	}
	s.mu.RLock()
	same := digest == s.digest
	s.mu.RUnlock()
	if same {
		return false, nil
	}
	set, err := parse(s.pairs, raw)
	if err != nil {
		return false, err
	}
	s.mu.Lock()
	s.set, s.digest = set, digest
	s.mu.Unlock()
	return true, nil
}

// Certs describes the certificates served now, in configuration order.
func (s *Store) Certs() []Cert {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return append([]Cert(nil), s.set.info...)
}

// GetCertificate is a tls.Config.GetCertificate: the certificate whose
// names match the client's server name (exactly, or by a wildcard one
// label deep), else the first configured one.
func (s *Store) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	s.mu.RLock()
	set := s.set
	s.mu.RUnlock()
	name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	if c, ok := set.exact[name]; ok {
		return c, nil
	}
	if i := strings.IndexByte(name, '.'); i > 0 {
		if c, ok := set.suffix[name[i+1:]]; ok {
			return c, nil
		}
	}
	return set.certs[0], nil
}

func (s *Store) read() (*certSet, [sha256.Size]byte, error) {
	raw, digest, err := s.readFiles()
	if err != nil {
		return nil, digest, err
	}
	set, err := parse(s.pairs, raw)
	return set, digest, err
}

// readFiles reads every file (certificate, key, certificate, key, …) and
// hashes them together.
func (s *Store) readFiles() ([][]byte, [sha256.Size]byte, error) {
	h := sha256.New()
	var raw [][]byte
	for _, p := range s.pairs {
		for _, f := range []string{p.CertFile, p.KeyFile} {
			b, err := os.ReadFile(f)
			if err != nil {
				return nil, [sha256.Size]byte{}, fmt.Errorf("certfiles: %w", err)
			}
			raw = append(raw, b)
			h.Write(b)
			h.Write([]byte{0})
		}
	}
	var d [sha256.Size]byte
	h.Sum(d[:0])
	return raw, d, nil
}

func parse(pairs []Pair, raw [][]byte) (*certSet, error) {
	set := &certSet{exact: map[string]*tls.Certificate{}, suffix: map[string]*tls.Certificate{}}
	for i, p := range pairs {
		c, err := tls.X509KeyPair(raw[2*i], raw[2*i+1])
		if err != nil {
			return nil, fmt.Errorf("certfiles: %s, %s: %w", p.CertFile, p.KeyFile, err)
		}
		leaf := c.Leaf
		if leaf == nil { // Go fills Leaf; be safe with older behaviour
			if leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
				return nil, fmt.Errorf("certfiles: %s: %w", p.CertFile, err)
			}
			c.Leaf = leaf
		}
		info := Cert{Pair: p, NotAfter: leaf.NotAfter}
		for _, n := range leaf.DNSNames {
			n = strings.ToLower(n)
			info.Names = append(info.Names, n)
			target := set.exact
			if rest, ok := strings.CutPrefix(n, "*."); ok {
				n, target = rest, set.suffix
			}
			if _, taken := target[n]; !taken { // the first configured wins
				target[n] = &c
			}
		}
		for _, ip := range leaf.IPAddresses {
			info.Names = append(info.Names, ip.String())
		}
		set.certs = append(set.certs, &c)
		set.info = append(set.info, info)
	}
	return set, nil
}
