package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"
)

// CheckFiles checks the files and directories a config file refers to, for
// --check-config: every *_file and *_db key names a readable file, and every
// *_dir key a directory the process can write, or can create (its parent
// exists and is writable). It reports every problem at once, each with the
// file, line and key path. Keys that are not set, and file: secrets (read
// while the config is decoded), are not its business.
func CheckFiles(name string, data []byte) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil || len(doc.Content) == 0 {
		return nil // decoding reports syntax errors
	}
	var errs Errors
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
				if v.Kind == yaml.ScalarNode && v.Value != "" {
					if err := checkRef(k.Value, v.Value); err != nil {
						errs.Addf("%s:%d: %s: %v", name, v.Line, p, err)
					}
				}
				walk(v, p)
			}
		case yaml.SequenceNode:
			for i, v := range n.Content {
				walk(v, fmt.Sprintf("%s[%d]", path, i))
			}
		}
	}
	walk(doc.Content[0], "")
	return errs.Err()
}

func checkRef(key, value string) error {
	switch {
	case strings.HasSuffix(key, "_file") || strings.HasSuffix(key, "_db"):
		f, err := os.Open(value)
		if err != nil {
			return err
		}
		defer f.Close()
		if st, err := f.Stat(); err == nil && st.IsDir() {
			return fmt.Errorf("%s is a directory, not a file", value)
		}
		return nil
	case strings.HasSuffix(key, "_dir"):
		dir := value
		st, err := os.Stat(dir)
		if errors.Is(err, os.ErrNotExist) {
			dir = filepath.Dir(filepath.Clean(value)) // created at start: its parent must take it
			if st, err = os.Stat(dir); err != nil {
				return fmt.Errorf("%s does not exist, nor does its parent: %w", value, err)
			}
		}
		if err != nil {
			return err
		}
		if !st.IsDir() {
			return fmt.Errorf("%s is not a directory", dir)
		}
		probe, err := os.CreateTemp(dir, ".longlink-check-*")
		if err != nil {
			return fmt.Errorf("%s is not writable: %w", dir, err)
		}
		probe.Close()
		os.Remove(probe.Name())
	}
	return nil
}
