package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/longlink/longlink/core/link"
	"github.com/longlink/longlink/core/logintoken"
)

func init() {
	register(command{name: "keygen", summary: "generate a Link server key pair (-token: a login-token signing key pair)", run: runKeygen})
}

func runKeygen(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("keygen", flag.ContinueOnError)
	id := fs.String("id", "k1", "key id that clients name in the handshake (with -token: that tokens name)")
	token := fs.Bool("token", false, "generate an Ed25519 login-token signing key (service.token_key) instead of a Link key")
	if err := fs.Parse(args); err != nil {
		return err
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
