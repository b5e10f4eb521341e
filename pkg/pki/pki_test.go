package pki

import (
	"crypto/tls"
	"io"
	"testing"
)

func TestMutualTLS(t *testing.T) {
	ca, err := NewCA("test-ca")
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewCA("stranger-ca")
	if err != nil {
		t.Fatal(err)
	}
	serverCert, _ := ca.Issue("server", "127.0.0.1")
	clientCert, _ := ca.Issue("client")
	strangerCert, _ := other.Issue("client")

	ln, err := tls.Listen("tcp", "127.0.0.1:0", MutualTLS(serverCert, ca.Pool()))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()

	dial := func(cert tls.Certificate) error {
		cfg := MutualTLS(cert, ca.Pool())
		cfg.ServerName = "127.0.0.1"
		c, err := tls.Dial("tcp", ln.Addr().String(), cfg)
		if err != nil {
			return err
		}
		defer c.Close()
		if _, err := c.Write([]byte("ping")); err != nil {
			return err
		}
		buf := make([]byte, 4)
		_, err = io.ReadFull(c, buf)
		return err
	}
	if err := dial(clientCert); err != nil {
		t.Fatalf("member of the cluster refused: %v", err)
	}
	if err := dial(strangerCert); err == nil {
		t.Fatal("certificate from another CA accepted")
	}
}

func TestSaveLoad(t *testing.T) {
	dir := t.TempDir()
	ca, err := LoadOrCreateCA(dir, "dev")
	if err != nil {
		t.Fatal(err)
	}
	again, err := LoadOrCreateCA(dir, "dev")
	if err != nil {
		t.Fatal(err)
	}
	if !again.Cert.Equal(ca.Cert) {
		t.Fatal("second load created a new CA")
	}
}
