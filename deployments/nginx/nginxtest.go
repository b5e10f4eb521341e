// Package nginx holds the example nginx configuration for WebLink and the
// helpers its tests use to run it. See longlink.conf.
package nginx

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Binary is the nginx executable, or "" when nginx is not installed.
func Binary() string {
	for _, p := range []string{"nginx", "/usr/sbin/nginx"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	return ""
}

// Prepare writes a runnable copy of the example configuration into dir: a
// throwaway self-signed certificate replaces the production paths, the
// listeners move to httpAddr and httpsAddr, the upstream to upstream, and an
// nginx.conf wraps it with everything kept inside dir. It returns the path of
// that nginx.conf.
func Prepare(example, dir, httpAddr, httpsAddr, upstream string) (string, error) {
	raw, err := os.ReadFile(example)
	if err != nil {
		return "", err
	}
	cert, key, err := selfSigned(dir)
	if err != nil {
		return "", err
	}
	conf := string(raw)
	for old, repl := range map[string]string{
		"/etc/longlink/tls/fullchain.pem": cert,
		"/etc/longlink/tls/privkey.pem":   key,
		"listen 80;":                      "listen " + httpAddr + ";",
		"listen 443 ssl;":                 "listen " + httpsAddr + " ssl;",
		"server 127.0.0.1:7711;":          "server " + upstream + ";",
	} {
		if !strings.Contains(conf, old) {
			return "", fmt.Errorf("%s: %q not found", example, old)
		}
		conf = strings.ReplaceAll(conf, old, repl)
	}
	site := filepath.Join(dir, "longlink.conf")
	if err := os.WriteFile(site, []byte(conf), 0o644); err != nil {
		return "", err
	}
	for _, d := range []string{"logs", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return "", err
		}
	}
	main := fmt.Sprintf(`daemon off;
master_process off;
pid %[1]s/nginx.pid;
error_log stderr warn;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path %[1]s/tmp/body;
    proxy_temp_path %[1]s/tmp/proxy;
    fastcgi_temp_path %[1]s/tmp/fastcgi;
    uwsgi_temp_path %[1]s/tmp/uwsgi;
    scgi_temp_path %[1]s/tmp/scgi;
    include %[2]s;
}
`, dir, site)
	path := filepath.Join(dir, "nginx.conf")
	return path, os.WriteFile(path, []byte(main), 0o644)
}

// selfSigned writes a throwaway certificate for localhost and 127.0.0.1.
func selfSigned(dir string) (certPath, keyPath string, err error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost", "chat.example.com"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		return "", "", err
	}
	kb, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return "", "", err
	}
	certPath, keyPath = filepath.Join(dir, "fullchain.pem"), filepath.Join(dir, "privkey.pem")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return "", "", err
	}
	return certPath, keyPath, os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
}
