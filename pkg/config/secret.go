package config

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Secret is a configuration value that must never reach a log line. In YAML it
// is written either literally, as "file:/path/to/secret" (the file's content,
// trailing newline removed), or as "env:NAME" (the environment variable).
type Secret struct {
	value string
	set   bool
}

// NewSecret wraps a value obtained elsewhere (generated, fetched from the LBS).
func NewSecret(v string) Secret { return Secret{value: v, set: v != ""} }

// Reveal returns the secret for the one place that needs it (an HMAC, a TLS key).
func (s Secret) Reveal() string { return s.value }

// IsSet reports whether a value was configured.
func (s Secret) IsSet() bool { return s.set }

// String keeps fmt and %v from printing the value.
func (s Secret) String() string {
	if !s.set {
		return ""
	}
	return "[redacted]"
}

// LogValue keeps slog from printing the value.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalYAML keeps a config dump from printing the value.
func (s Secret) MarshalYAML() (any, error) { return s.String(), nil }

// UnmarshalYAML resolves file: and env: references while the config is read, so
// that a missing file is reported with the rest of the config's errors.
func (s *Secret) UnmarshalYAML(n *yaml.Node) error {
	var raw string
	if err := n.Decode(&raw); err != nil {
		return err
	}
	v, err := ResolveSecret(raw)
	if err != nil {
		return lineError(n, err.Error())
	}
	*s = NewSecret(v)
	return nil
}

// ResolveSecret expands a "file:" or "env:" reference; any other string is
// returned as it is.
func ResolveSecret(raw string) (string, error) {
	switch {
	case strings.HasPrefix(raw, "file:"):
		b, err := os.ReadFile(strings.TrimPrefix(raw, "file:"))
		if err != nil {
			return "", fmt.Errorf("secret: %w", err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	case strings.HasPrefix(raw, "env:"):
		name := strings.TrimPrefix(raw, "env:")
		v, ok := os.LookupEnv(name)
		if !ok {
			return "", fmt.Errorf("secret: environment variable %s is not set", name)
		}
		return v, nil
	}
	return raw, nil
}
