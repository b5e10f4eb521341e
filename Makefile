# The README's test command is `make test`; .ci/run runs exactly that.
# `make test` installs what the tests need on a fresh Debian machine (as root),
# then runs vet, the unit tests and the integration tests.

GO ?= go
TEST_TIMEOUT ?= 45m

.PHONY: test test-deps unit vet build image websdk

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS = -X main.version=$(VERSION) -X main.commit=$(COMMIT)

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/longlink ./cmd/longlink

# The container image, built by ko without a Docker engine into an OCI
# layout (bin/image); KO_DOCKER_REPO=registry/longlink PUSH=true publishes
# it instead (deployments/README.md).
KO_DOCKER_REPO ?= longlink.local/longlink
PUSH ?= false
image:
	cd tools/deploytools && $(GO) build -o ../../bin/ github.com/google/ko ./imagetool
	KOCACHE=bin/kocache KO_DEFAULTBASEIMAGE=$$(bin/imagetool base -kocache bin/kocache) \
	KO_CONFIG_PATH=deployments/image/ko.yaml LONGLINK_VERSION=$(VERSION) LONGLINK_COMMIT=$(COMMIT) \
	KO_DOCKER_REPO=$(KO_DOCKER_REPO) bin/ko build --bare --sbom=none --platform=linux/amd64 \
		--push=$(PUSH) $(if $(filter false,$(PUSH)),--oci-layout-path=bin/image) ./cmd/longlink

test: test-deps vet websdk
	LONGLINK_INTEGRATION=1 $(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

unit:
	$(GO) test ./...

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }

# The Web SDK (core/sdk/web): type check, build, unit tests, the bundle size
# budget, and the check that the bundle WebLink embeds and the API reference
# are what the sources build. Its end-to-end tests run from cmd/longlink.
websdk:
	cd core/sdk/web && npm run ci

test-deps:
	./tools/testdeps/install.sh
