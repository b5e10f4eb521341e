package config

import (
	"fmt"
	"time"

	"go.yaml.in/yaml/v3"
)

// Duration is a time.Duration written in YAML as "250ms", "5s" or "1h".
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalYAML writes the duration in Go syntax.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// UnmarshalYAML parses Go duration syntax. Its errors carry the line, so
// that Decode names the key and decoding goes on to report the rest.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var raw string
	if err := n.Decode(&raw); err != nil {
		return err
	}
	v, err := time.ParseDuration(raw)
	if err != nil {
		hint := ""
		if _, numErr := fmt.Sscanf(raw, "%g", new(float64)); numErr == nil {
			hint = ` (a duration needs a unit: "5s", "250ms", "1h")`
		}
		return lineError(n, fmt.Sprintf("duration %q: %v%s", raw, err, hint))
	}
	*d = Duration(v)
	return nil
}

// lineError is a decoding error at n's line, collected with the others.
func lineError(n *yaml.Node, msg string) error {
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %s", n.Line, msg)}}
}
