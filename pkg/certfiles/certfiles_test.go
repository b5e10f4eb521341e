package certfiles

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"

	"github.com/longlink/longlink/pkg/pki"
)

// writePair issues a certificate for names and writes it as PEM files.
func writePair(t *testing.T, ca *pki.CA, dir, file string, names ...string) Pair {
	t.Helper()
	p := Pair{CertFile: filepath.Join(dir, file+".pem"), KeyFile: filepath.Join(dir, file+"-key.pem")}
	if err := ca.IssueFiles(p.CertFile, p.KeyFile, names[0], names[1:]...); err != nil {
		t.Fatal(err)
	}
	return p
}

func leafFor(t *testing.T, s *Store, sni string) *x509.Certificate {
	t.Helper()
	c, err := s.GetCertificate(&tls.ClientHelloInfo{ServerName: sni})
	if err != nil {
		t.Fatal(err)
	}
	return c.Leaf
}

func TestSNISelection(t *testing.T) {
	ca, err := pki.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s, err := Load([]Pair{
		writePair(t, ca, dir, "chat", "chat.example.com", "www.example.com"),
		writePair(t, ca, dir, "wild", "*.im.example.net", "127.0.0.1"),
		writePair(t, ca, dir, "again", "chat.example.com"), // a later duplicate never wins
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ sni, want string }{
		{"chat.example.com", "chat.example.com"},
		{"WWW.Example.COM.", "chat.example.com"},
		{"eu.im.example.net", "*.im.example.net"},
		{"a.eu.im.example.net", "chat.example.com"}, // wildcards cover one label
		{"im.example.net", "chat.example.com"},
		{"", "chat.example.com"}, // no SNI (an IP address): the first
		{"unknown.example.org", "chat.example.com"},
	} {
		if got := leafFor(t, s, tc.sni).Subject.CommonName; got != tc.want {
			t.Errorf("SNI %q: served %q, want %q", tc.sni, got, tc.want)
		}
	}
	certs := s.Certs()
	if len(certs) != 3 || certs[1].Names[0] != "*.im.example.net" || certs[1].Names[1] != "127.0.0.1" || certs[0].NotAfter.IsZero() {
		t.Fatalf("Certs() = %+v", certs)
	}
}

func TestReload(t *testing.T) {
	ca, err := pki.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p := writePair(t, ca, dir, "chat", "chat.example.com")
	s, err := Load([]Pair{p})
	if err != nil {
		t.Fatal(err)
	}
	first := leafFor(t, s, "chat.example.com").SerialNumber
	if changed, err := s.Reload(); changed || err != nil {
		t.Fatalf("reload of unchanged files: changed %v, %v", changed, err)
	}

	// A renewal: the new certificate is served.
	writePair(t, ca, dir, "chat", "chat.example.com", "new.example.com")
	if changed, err := s.Reload(); !changed || err != nil {
		t.Fatalf("reload after renewal: changed %v, %v", changed, err)
	}
	second := leafFor(t, s, "new.example.com")
	if second.SerialNumber.Cmp(first) == 0 || second.Subject.CommonName != "chat.example.com" {
		t.Fatal("the renewed certificate is not served")
	}

	// A broken renewal (key of another certificate, then a truncated
	// file) keeps the working set.
	other := writePair(t, ca, dir, "other", "other.example.com")
	key, _ := os.ReadFile(other.KeyFile)
	if err := os.WriteFile(p.KeyFile, key, 0o600); err != nil {
		t.Fatal(err)
	}
	if changed, err := s.Reload(); changed || err == nil {
		t.Fatalf("reload with a mismatched key: changed %v, err %v", changed, err)
	}
	if err := os.WriteFile(p.CertFile, []byte("-----BEGIN CERT"), 0o600); err != nil {
		t.Fatal(err)
	}
	if changed, err := s.Reload(); changed || err == nil {
		t.Fatalf("reload with a truncated certificate: changed %v, err %v", changed, err)
	}
	if got := leafFor(t, s, "new.example.com").SerialNumber; got.Cmp(second.SerialNumber) != 0 {
		t.Fatal("a failed reload replaced the working certificate")
	}
	if err := os.Remove(p.CertFile); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reload(); err == nil {
		t.Fatal("reload of a missing file succeeded")
	}
}

func TestLoadErrors(t *testing.T) {
	if _, err := Load(nil); err == nil {
		t.Error("Load(nil) succeeded")
	}
	if _, err := Load([]Pair{{CertFile: "/nonexistent.pem", KeyFile: "/nonexistent-key.pem"}}); err == nil {
		t.Error("Load of missing files succeeded")
	}
}
