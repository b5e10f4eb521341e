// Package config loads one YAML file per process into a component's Config
// struct. Decoding is strict: an unknown key is an error that names the file and
// line, so a typo never silently falls back to a default.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Validator is implemented by configs that can check themselves after defaults
// have been applied and the file has been decoded on top of them.
type Validator interface {
	Validate() error
}

// Load reads the YAML file at path into dst. dst should already hold the
// defaults (for example from the component's Default()); keys present in the file
// override them. If dst implements Validator, Validate is called last.
func Load(path string, dst any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return Decode(path, data, dst)
}

// Decode is Load for bytes already in memory; name is used in error messages.
func Decode(name string, data []byte, dst any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(dst); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config %s: %w", name, prefixLines(name, data, err))
	}
	if v, ok := dst.(Validator); ok {
		if err := v.Validate(); err != nil {
			return fmt.Errorf("config %s: %w", name, err)
		}
	}
	return nil
}

// prefixLines turns yaml's "line 3: field foo not found" messages into
// "file.yaml:3: tls.foo: field foo not found" so editors can jump to them
// and operators see which key, even where the message names only a value.
func prefixLines(name string, data []byte, err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err
	}
	paths := keyPaths(data)
	var b bytes.Buffer
	for i, e := range te.Errors {
		if i > 0 {
			b.WriteString("; ")
		}
		var line int
		var rest string
		if n, _ := fmt.Sscanf(e, "line %d:", &line); n == 1 {
			if idx := bytes.IndexByte([]byte(e), ':'); idx >= 0 {
				rest = e[idx+1:]
			}
			if p := paths[line]; p != "" && !strings.HasPrefix(strings.TrimSpace(rest), p+":") {
				rest = " " + p + ":" + rest
			}
			fmt.Fprintf(&b, "%s:%d:%s", name, line, rest)
			continue
		}
		b.WriteString(e)
	}
	return errors.New(b.String())
}

// keyPaths maps each line of a YAML document that holds a key (or a list
// item) to its dotted path: "tls.cert_file", "apps[1].secret".
func keyPaths(data []byte) map[int]string {
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil || len(doc.Content) == 0 {
		return nil
	}
	out := map[int]string{}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := k.Value
				if path != "" {
					p = path + "." + k.Value
				}
				out[k.Line] = p
				walk(v, p)
			}
		case yaml.SequenceNode:
			for i, v := range n.Content {
				p := fmt.Sprintf("%s[%d]", path, i)
				if _, taken := out[v.Line]; !taken {
					out[v.Line] = p
				}
				walk(v, p)
			}
		}
	}
	walk(doc.Content[0], "")
	return out
}

// Errors collects every problem found by a Validate method so that an operator
// sees all of them at once instead of fixing one per run.
type Errors []error

// Addf records a problem.
func (e *Errors) Addf(format string, args ...any) {
	*e = append(*e, fmt.Errorf(format, args...))
}

// Err returns nil when nothing was recorded, or all problems joined.
func (e Errors) Err() error {
	return errors.Join(e...)
}
