// Command k8sschemas turns the Kubernetes OpenAPI (swagger 2) document into
// the JSON schemas kubeconform reads from a local directory, as
// openapi2jsonschema does for the published schema sets: one file per kind
// ({kind}-{group}-{version}.json, lower case) referring to the shared
// definitions in _definitions.json. The schemas are strict (an unknown field
// is an error), int-or-string fields take either, and quantities take
// strings or numbers.
//
//	k8sschemas -swagger .../api/openapi-spec/swagger.json -out DIR
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
)

func main() {
	swagger := flag.String("swagger", "", "Kubernetes api/openapi-spec/swagger.json")
	out := flag.String("out", "", "output directory")
	flag.Parse()
	if *swagger == "" || *out == "" {
		flag.Usage()
		os.Exit(2)
	}
	n, err := convert(*swagger, *out)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("k8sschemas: %d kinds written to %s\n", n, *out)
}

func convert(swaggerPath, out string) (int, error) {
	b, err := os.ReadFile(swaggerPath)
	if err != nil {
		return 0, err
	}
	var doc struct {
		Definitions map[string]map[string]any `json:"definitions"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return 0, fmt.Errorf("%s: %w", swaggerPath, err)
	}
	if len(doc.Definitions) == 0 {
		return 0, fmt.Errorf("%s: no definitions", swaggerPath)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return 0, err
	}
	defs := map[string]any{}
	kinds := 0
	for name, d := range doc.Definitions {
		switch {
		case strings.HasSuffix(name, ".util.intstr.IntOrString"):
			d = map[string]any{"oneOf": []any{map[string]any{"type": "string"}, map[string]any{"type": "integer"}}}
		case strings.HasSuffix(name, ".api.resource.Quantity"):
			d = map[string]any{"oneOf": []any{map[string]any{"type": "string"}, map[string]any{"type": "number"}}}
		default:
			strict(d)
		}
		defs[name] = d
		gvks, _ := d["x-kubernetes-group-version-kind"].([]any)
		for _, g := range gvks {
			gvk, _ := g.(map[string]any)
			group, _ := gvk["group"].(string)
			version, _ := gvk["version"].(string)
			kind, _ := gvk["kind"].(string)
			file := strings.ToLower(kind)
			if group != "" {
				file += "-" + strings.ToLower(strings.Split(group, ".")[0])
			}
			file += "-" + strings.ToLower(version) + ".json"
			ref, _ := json.Marshal(map[string]any{"$ref": "_definitions.json#/definitions/" + name})
			if err := os.WriteFile(filepath.Join(out, file), ref, 0o644); err != nil {
				return 0, err
			}
			kinds++
		}
	}
	all, err := json.Marshal(map[string]any{"definitions": defs})
	if err != nil {
		return 0, err
	}
	return kinds, os.WriteFile(filepath.Join(out, "_definitions.json"), all, 0o644)
}

// strict forbids properties a schema does not name, all the way down.
func strict(s map[string]any) {
	if props, ok := s["properties"].(map[string]any); ok {
		if _, set := s["additionalProperties"]; !set {
			s["additionalProperties"] = false
		}
		for _, p := range props {
			if m, ok := p.(map[string]any); ok {
				strict(m)
			}
		}
	}
	for _, k := range []string{"items", "additionalProperties"} {
		if m, ok := s[k].(map[string]any); ok {
			strict(m)
		}
	}
}
