package lbs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/longlink/longlink/lbs/internal/engine"
	"github.com/longlink/longlink/lbs/internal/model"
	"github.com/longlink/longlink/pkg/config"
)

// TestDeployments checks that the example configs and policy in
// deployments/lbs decode strictly and validate.
func TestDeployments(t *testing.T) {
	dir := t.TempDir()
	tok := filepath.Join(dir, "token")
	os.WriteFile(tok, []byte("0123456789abcdef0123456789"), 0o600)
	files, _ := filepath.Glob("../deployments/lbs/lbs-*.yaml")
	if len(files) != 3 {
		t.Fatalf("want 3 member configs, found %v", files)
	}
	for _, f := range files {
		b := mustRead(t, f)
		s := strings.NewReplacer("file:/etc/longlink/lbs-admin-token", "file:"+tok, "file:/etc/longlink/lbs-node-token", "file:"+tok).Replace(string(b))
		cfg := Default()
		if err := config.Decode(f, []byte(s), &cfg); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	policies, _ := filepath.Glob("../deployments/cluster/policy*.yaml") // docs/cluster.md's
	if len(policies) < 2 {
		t.Fatalf("want the cluster walkthrough's policies, found %v", policies)
	}
	for _, f := range append(policies, "../deployments/lbs/policy.example.yaml") {
		var doc model.Document
		if err := config.Decode(f, mustRead(t, f), &doc); err != nil {
			t.Fatal(err)
		}
		if _, err := engine.Compile(&doc, nil, 1); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
}
