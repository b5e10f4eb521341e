package sdk

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/longlink/longlink/core/link"
)

// ClientFile is the small client configuration `longlink dev` writes (as
// <dev-dir>/client.json) for `longlink chat` and other local clients:
//
//	{
//	  "addresses": ["127.0.0.1:7720"],
//	  "direct": ["127.0.0.1:7710"],
//	  "weblink": ["http://127.0.0.1:7711"],
//	  "lbs": "http://127.0.0.1:7700",
//	  "appkey": "demo",
//	  "keys": [{"id": "dev-1", "public_key": "<base64 X25519>"}],
//	  "users": [{"account": "alice", "token": "…"}, {"account": "bob", "token": "…"}]
//	}
type ClientFile struct {
	Addresses []string `json:"addresses"`
	// Direct are the core's own Link addresses, for clients that skip the
	// edge (`longlink chat --direct`).
	Direct  []string     `json:"direct,omitempty"`
	WebLink []string     `json:"weblink,omitempty"`
	LBS     string       `json:"lbs,omitempty"`
	AppKey  string       `json:"appkey"`
	Keys    []ClientKey  `json:"keys"`
	Users   []ClientUser `json:"users"`
}

// ClientKey is a gateway public key.
type ClientKey struct {
	ID        string `json:"id"`
	PublicKey string `json:"public_key"`
}

// ClientUser is a demo account and its token.
type ClientUser struct {
	Account string `json:"account"`
	Token   string `json:"token"`
}

// LoadClientFile reads and checks a client file.
func LoadClientFile(path string) (*ClientFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("client file: %w", err)
	}
	var f ClientFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("client file %s: %w", path, err)
	}
	if _, err := f.ServerKeys(); err != nil {
		return nil, fmt.Errorf("client file %s: %w", path, err)
	}
	if len(f.Addresses) == 0 || f.AppKey == "" {
		return nil, fmt.Errorf("client file %s: addresses and appkey are required", path)
	}
	return &f, nil
}

// Write stores the file (mode 0600: it holds tokens), creating its directory.
func (f *ClientFile) Write(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("client file: %w", err)
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("client file: %w", err)
	}
	return os.Rename(tmp, path)
}

// ServerKeys decodes the keys for Config.ServerKeys.
func (f *ClientFile) ServerKeys() (map[string][]byte, error) {
	keys := make(map[string][]byte, len(f.Keys))
	for _, k := range f.Keys {
		if err := link.ValidKeyID(k.ID); err != nil {
			return nil, err
		}
		b, err := link.DecodeKey(k.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("key %s: %w", k.ID, err)
		}
		keys[k.ID] = b
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("no keys")
	}
	return keys, nil
}

// Config returns a client configuration for one of the file's users.
func (f *ClientFile) Config(account string) (Config, error) {
	keys, err := f.ServerKeys()
	if err != nil {
		return Config{}, err
	}
	for _, u := range f.Users {
		if u.Account == account {
			return Config{Addresses: f.Addresses, ServerKeys: keys, AppKey: f.AppKey, Account: u.Account, Token: u.Token}, nil
		}
	}
	return Config{}, fmt.Errorf("client file: no user %q", account)
}
