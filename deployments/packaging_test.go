package deployments

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// The packaging checks run the field's tools, pinned by
// tools/deploytools/go.mod and built from the Go module proxy: helm lint and
// helm template piped to kubeconform (strict, against the Kubernetes
// schemas), compose-go's loader for the compose file, and ko for the image.
// The Kubernetes schemas come from the OpenAPI document of the pinned
// Kubernetes module (kubeVersion below), checksum-verified by the Go module
// system, converted by tools/deploytools/k8sschemas: nothing unpinned is
// fetched.
const kubeModule = "k8s.io/kubernetes@v1.36.3"

// kubeVersion is what helm template renders for (the chart's kubeVersion
// must accept it).
const kubeVersion = "1.36.3"

func integration(t *testing.T) {
	t.Helper()
	if os.Getenv("LONGLINK_INTEGRATION") == "" {
		t.Skip("integration test: set LONGLINK_INTEGRATION=1 (builds helm, kubeconform, ko)")
	}
}

var (
	toolsOnce sync.Once
	toolsDir  string
	toolsErr  error
)

// deployTools builds the pinned tools once, into a cache directory keyed
// by tools/deploytools/go.sum, and returns the directory.
func deployTools(t *testing.T) string {
	t.Helper()
	toolsOnce.Do(func() {
		sum, err := os.ReadFile("../tools/deploytools/go.sum")
		if err != nil {
			toolsErr = err
			return
		}
		cache, err := os.UserCacheDir()
		if err != nil {
			cache = os.TempDir()
		}
		h := sha256.Sum256(sum)
		toolsDir = filepath.Join(cache, "longlink-deploytools", hex.EncodeToString(h[:8]))
		if _, err := os.Stat(filepath.Join(toolsDir, "ok")); err == nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", toolsDir+"/", "helm.sh/helm/v3/cmd/helm",
			"github.com/yannh/kubeconform/cmd/kubeconform", "github.com/google/ko", "./k8sschemas", "./composecheck", "./imagetool")
		cmd.Dir = "../tools/deploytools"
		if out, err := cmd.CombinedOutput(); err != nil {
			toolsErr = err
			t.Logf("%s", out)
			return
		}
		toolsErr = os.WriteFile(filepath.Join(toolsDir, "ok"), nil, 0o644)
	})
	if toolsErr != nil {
		t.Fatalf("deploy tools: %v", toolsErr)
	}
	return toolsDir
}

func run(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String()
}

// k8sSchemas converts the pinned Kubernetes OpenAPI document into
// kubeconform's layout and returns the -schema-location template.
func k8sSchemas(t *testing.T, tools string) string {
	t.Helper()
	dl := run(t, "../tools/deploytools", nil, "go", "mod", "download", "-json", kubeModule)
	var m struct{ Dir string }
	if err := json.Unmarshal([]byte(dl), &m); err != nil || m.Dir == "" {
		t.Fatalf("go mod download %s: %v\n%s", kubeModule, err, dl)
	}
	out := t.TempDir()
	run(t, ".", nil, filepath.Join(tools, "k8sschemas"), "-swagger", filepath.Join(m.Dir, "api/openapi-spec/swagger.json"), "-out", out)
	return out + "/{{ .ResourceKind }}{{ .KindSuffix }}.json"
}

// helmTemplate renders the chart as release "longlink" in namespace
// "longlink" (the committed manifests).
func helmTemplate(t *testing.T, tools string, extra ...string) string {
	args := append([]string{"template", "longlink", "helm/longlink", "--namespace", "longlink", "--kube-version", kubeVersion}, extra...)
	return run(t, ".", nil, filepath.Join(tools, "helm"), args...)
}

// The chart passes helm lint and renders to manifests that kubeconform
// finds valid against the Kubernetes schemas, strictly; the committed
// manifests in kubernetes/ are the chart's rendering; the topology is the
// one docs/cluster.md describes.
func TestHelmChartAndManifests(t *testing.T) {
	integration(t)
	tools := deployTools(t)
	run(t, ".", nil, filepath.Join(tools, "helm"), "lint", "--strict", "--kube-version", kubeVersion, "helm/longlink")
	rendered := helmTemplate(t, tools)
	committed, err := os.ReadFile("kubernetes/longlink.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := "# Rendered from helm/longlink (helm template longlink deployments/helm/longlink --namespace longlink); a test keeps it so.\n" + rendered; got != string(committed) {
		os.WriteFile(filepath.Join(t.TempDir(), "longlink.yaml"), []byte(got), 0o644)
		t.Fatalf("kubernetes/longlink.yaml is not the chart's rendering; regenerate it:\n  (echo '# Rendered from helm/longlink (helm template longlink deployments/helm/longlink --namespace longlink); a test keeps it so.'; helm template longlink deployments/helm/longlink --namespace longlink --kube-version %s) > deployments/kubernetes/longlink.yaml", kubeVersion)
	}
	schemas := k8sSchemas(t, tools)
	kc := filepath.Join(tools, "kubeconform")
	out := run(t, ".", nil, kc, "-strict", "-summary", "-schema-location", schemas, "kubernetes/longlink.yaml")
	if !strings.Contains(out, "Invalid: 0, Errors: 0, Skipped: 0") {
		t.Fatalf("kubeconform:\n%s", out)
	}
	// autoscaling off renders without the HPA and with fixed replicas
	noHPA := filepath.Join(t.TempDir(), "no-hpa.yaml")
	os.WriteFile(noHPA, []byte(helmTemplate(t, tools, "--set", "services.autoscaling.enabled=false", "--set", "lbs.replicas=5")), 0o644)
	out = run(t, ".", nil, kc, "-strict", "-summary", "-schema-location", schemas, noHPA)
	if !strings.Contains(out, "Invalid: 0, Errors: 0, Skipped: 0") {
		t.Fatalf("kubeconform (no HPA, 5 LBS members):\n%s", out)
	}
	// kubeconform's strict mode refuses what the schemas do not allow
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte(strings.Replace(rendered, "podManagementPolicy: Parallel", "podManagementPolicy: Parallel\n  bogusField: 1", 1)), 0o644)
	if out, err := exec.Command(kc, "-strict", "-summary", "-schema-location", schemas, bad).CombinedOutput(); err == nil || !strings.Contains(string(out), "bogusField") {
		t.Fatalf("kubeconform accepted an unknown field: %v\n%s", err, out)
	}

	for _, want := range []string{
		"kind: StatefulSet", "replicas: 3", "-node-id=$(POD_NAME)", "-raft-advertise=$(POD_NAME).longlink-lbs-peers.longlink.svc:7702",
		"clusterIP: None", "kind: HorizontalPodAutoscaler", "name: longlink_service_inflight_requests",
		"name: longlink_store_append_queue_length", "kind: PodDisruptionBudget", "path: /healthz", "path: /readyz",
		"name: longlink-gateway", "name: longlink-services", "name: longlink-edge-fra-1", "name: longlink-relay-a",
		"protocol: UDP", "runAsNonRoot: true",
	} {
		if !strings.Contains(rendered, want) {
			t.Errorf("rendered chart lacks %q", want)
		}
	}
	if n := strings.Count(rendered, "kind: PodDisruptionBudget"); n != 3 {
		t.Errorf("%d PodDisruptionBudgets, want 3 (lbs, gateway, services)", n)
	}
	// every container asks for resources
	if c, r := strings.Count(rendered, "image: "), strings.Count(rendered, "requests:"); r < c {
		t.Errorf("%d containers, %d with resource requests", c, r)
	}
}

// The compose file loads with compose-go (the loader of docker compose)
// and has the topology's services.
func TestComposeFile(t *testing.T) {
	integration(t)
	tools := deployTools(t)
	abs, _ := filepath.Abs("compose/compose.yaml")
	out := run(t, ".", []string{"NATS_PASSWORD=checked"}, filepath.Join(tools, "composecheck"), "-f", abs)
	for _, s := range []string{"lbs-1", "lbs-2", "lbs-3", "gateway", "services", "edge", "relay", "nats", "postgres"} {
		if !regexp.MustCompile(`(?m)^service ` + s + ` `).MatchString(out) {
			t.Errorf("compose file lacks service %s:\n%s", s, out)
		}
	}
	if !strings.Contains(out, "7722:7722/udp") || !strings.Contains(out, "user=65532:65532") {
		t.Errorf("compose: edge UDP port or non-root user missing:\n%s", out)
	}
	// the loader refuses what compose refuses
	b, _ := os.ReadFile("compose/compose.yaml")
	bad := filepath.Join(filepath.Dir(abs), "compose.bad-test.yaml")
	os.WriteFile(bad, bytes.Replace(b, []byte("stop_grace_period: 90s"), []byte("stop_grace_period: 90s\n  bogus_key: 1"), 1), 0o644)
	defer os.Remove(bad)
	check := exec.Command(filepath.Join(tools, "composecheck"), "-f", bad)
	check.Env = append(os.Environ(), "NATS_PASSWORD=checked")
	if out, err := check.CombinedOutput(); err == nil || !strings.Contains(string(out), "bogus_key") {
		t.Fatalf("composecheck accepted an unknown key: %v\n%s", err, out)
	}
}

// The image builds with ko and no Docker engine: reproducibly (the same
// digest twice), non-root, one executable, small; the binary in it runs,
// as the image's user, from the image's own file system.
func TestImage(t *testing.T) {
	integration(t)
	tools := deployTools(t)
	// ko names the layout's repository after its path: lower case only
	work, err := os.MkdirTemp("", "longlink-image-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(work) })
	kocache := filepath.Join(work, "kocache")
	base := strings.TrimSpace(run(t, ".", nil, filepath.Join(tools, "imagetool"), "base", "-kocache", kocache))
	build := func(layout string) string {
		env := []string{"KO_CONFIG_PATH=deployments/image/ko.yaml", "KOCACHE=" + kocache, "KO_DEFAULTBASEIMAGE=" + base,
			"KO_DOCKER_REPO=longlink.local/longlink", "LONGLINK_VERSION=v0.0.0-test", "LONGLINK_COMMIT=0123456789abcdef", "GOFLAGS=-buildvcs=false"}
		return strings.TrimSpace(run(t, "..", env, filepath.Join(tools, "ko"), "build", "--push=false", "--oci-layout-path="+layout,
			"--sbom=none", "--bare", "--platform=linux/amd64", "./cmd/longlink"))
	}
	// ko prints <layout path>@<digest>
	digest := func(ref string) string { _, d, _ := strings.Cut(ref, "@"); return d }
	first := build(filepath.Join(work, "a"))
	second := build(filepath.Join(work, "b"))
	if digest(first) == "" || digest(first) != digest(second) {
		t.Fatalf("two builds of the same source: %q and %q", first, second)
	}
	rootfs := filepath.Join(work, "rootfs")
	out := run(t, ".", nil, filepath.Join(tools, "imagetool"), "check", "-layout", filepath.Join(work, "a"), "-rootfs", rootfs, "-max-mb", "60")
	t.Log(strings.TrimSpace(out))
	if !strings.Contains(out, "user=65532:65532") || !strings.Contains(out, "entrypoint=/ko-app/longlink") {
		t.Fatalf("image: %s", out)
	}
	// run the image's binary in the image's file system, as its user
	cmd := exec.Command("chroot", "--userspec=65532:65532", rootfs, "/ko-app/longlink", "version")
	if os.Geteuid() != 0 {
		cmd = exec.Command(filepath.Join(rootfs, "ko-app/longlink"), "version")
	}
	v, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(v), "longlink v0.0.0-test") || !strings.Contains(string(v), "commit   0123456789abcdef") {
		t.Fatalf("the image's binary: %v\n%s", err, v)
	}
}
