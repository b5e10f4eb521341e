package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/longlink/longlink/core/link"
)

func init() {
	register(command{name: "keygen", summary: "generate a Link server key pair", run: runKeygen})
}

func runKeygen(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("keygen", flag.ContinueOnError)
	id := fs.String("id", "k1", "key id that clients name in the handshake")
	if err := fs.Parse(args); err != nil {
		return err
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
