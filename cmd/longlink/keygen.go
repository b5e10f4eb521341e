package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/longlink/longlink/core/link"
	"github.com/longlink/longlink/core/logintoken"
	"github.com/longlink/longlink/pkg/pki"
)

func init() {
	register(command{name: "keygen", summary: "generate a Link server key pair (-token: a login-token signing key pair; -tls: a TLS certificate from a CA)", run: runKeygen})
}

func runKeygen(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("keygen", flag.ContinueOnError)
	id := fs.String("id", "k1", "key id that clients name in the handshake (with -token: that tokens name)")
	token := fs.Bool("token", false, "generate an Ed25519 login-token signing key (service.token_key) instead of a Link key")
	tlsCert := fs.Bool("tls", false, "issue a TLS certificate (server and client use) signed by the CA in -ca, creating the CA on first use")
	caDir := fs.String("ca", "", "with -tls: directory of the CA (ca.pem, ca-key.pem)")
	name := fs.String("name", "", "with -tls: the certificate's name; writes NAME.pem and NAME-key.pem into -out")
	hosts := fs.String("hosts", "127.0.0.1,localhost", "with -tls: comma-separated DNS names and IP addresses it is valid for")
	out := fs.String("out", ".", "with -tls: directory for the certificate and key")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *tlsCert {
		if *caDir == "" || *name == "" {
			return errors.New("keygen -tls: -ca DIR and -name NAME are required")
		}
		ca, err := pki.LoadOrCreateCA(*caDir, "longlink")
		if err != nil {
			return err
		}
		if err := os.MkdirAll(*out, 0o700); err != nil {
			return err
		}
		cert, key := filepath.Join(*out, *name+".pem"), filepath.Join(*out, *name+"-key.pem")
		if err := ca.IssueFiles(cert, key, *name, strings.Split(*hosts, ",")...); err != nil {
			return err
		}
		fmt.Printf("ca: %s\ncert: %s\nkey: %s\n", filepath.Join(*caDir, "ca.pem"), cert, key)
		return nil
	}
	if *token {
		if err := logintoken.ValidKeyID(*id); err != nil {
			return err
		}
		seed, pub, err := logintoken.GenerateKey()
		if err != nil {
			return err
		}
		// The private key goes to the core's service.token_key (better: a
		// file referenced as file:/path); the public key and id go to the
		// edges' link.terminate.token_keys.
		fmt.Printf("id: %s\nprivate_key: %s\npublic_key: %s\n", *id, logintoken.EncodeKey(seed), logintoken.EncodeKey(pub))
		return nil
	}
	kp, err := link.GenerateKey(*id)
	if err != nil {
		return err
	}
	// The private key goes to the gateway config (better: a file referenced
	// as file:/path); the public key and id go to clients and the LBS.
	fmt.Printf("id: %s\nprivate_key: %s\npublic_key: %s\n", kp.ID, link.EncodeKey(kp.Private), link.EncodeKey(kp.Public))
	return nil
}
