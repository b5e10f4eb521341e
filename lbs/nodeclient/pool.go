package nodeclient

import "github.com/longlink/longlink/pkg/pki"

import "crypto/x509"

func loadPool(path string) (*x509.CertPool, error) { return pki.LoadPool(path) }
