# Cloudoreg: see README.md. Every target works on a machine with only Go installed.
GO      ?= go
BIN     := bin
MODULES := ./shared/... ./listener/... ./processor/... ./scripts/...
# The workspace's modules; each must also build, vet and tidy on its own.
MODDIRS := shared listener processor scripts
# Stamped into the binaries (exported as cloudoreg_build_info).
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo unknown)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS  := -X github.com/cloudoreg/cloudoreg/shared/buildinfo.Version=$(VERSION) -X github.com/cloudoreg/cloudoreg/shared/buildinfo.Revision=$(REVISION)
# Test timeout: generous for a 2-core CI machine under the race detector.
TEST_TIMEOUT ?= 20m

# The linter, pinned; installed into bin/tools by the first `make lint`.
GOLANGCI_LINT_VERSION := v2.15.0
GOLANGCI_LINT := $(BIN)/tools/golangci-lint-$(GOLANGCI_LINT_VERSION)

.PHONY: all build run stack demo test bench chaos vet modules lint fmt clean

all: build

build: ## bin/listener, bin/processor, bin/cloudoregctl, bin/stack and the run/demo tools
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ ./listener/cmd/listener ./processor/cmd/processor ./processor/cmd/cloudoregctl ./scripts/cmd/stack ./scripts/cmd/run ./scripts/cmd/demo

run: build ## the local stack, the listener and two processors, logs interleaved; Ctrl-C stops
	./$(BIN)/run -bin $(BIN)

stack: build ## only the local stack, in the foreground
	./$(BIN)/stack

demo: build ## start everything, create three sources, check their outcomes, stop
	./$(BIN)/demo -bin $(BIN)

chaos: build ## fault injection on the real programs, every scenario (a few minutes); see README "Reliability"
	$(GO) build -o $(BIN)/ ./scripts/cmd/chaos
	./$(BIN)/chaos -bin $(BIN)

test: vet modules lint ## every test, with the race detector, as CI runs them (after vet, the module checks and the linter)
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) $(MODULES)

vet:
	$(GO) vet $(MODULES)

modules: ## each module stands on its own: builds, vets and is tidy outside the workspace
	@for m in $(MODDIRS); do \
		echo "module $$m: GOWORK=off go build, go vet, go mod tidy -diff"; \
		(cd $$m && GOWORK=off $(GO) build ./... && GOWORK=off $(GO) vet ./... && GOWORK=off $(GO) mod tidy -diff) || \
			{ echo "module $$m does not stand on its own (see above): require what it imports, then GOWORK=off go mod tidy in $$m/"; exit 1; }; \
	done

bench: build ## the performance table (bin/bench-results.txt and .json), under 10 minutes; see README "Performance"
	$(GO) build -o $(BIN)/ ./scripts/cmd/bench
	./$(BIN)/bench -bin $(BIN) $(BENCH_FLAGS)

lint: $(GOLANGCI_LINT) ## golangci-lint with .golangci.yml (the import boundary of the core included)
	$(GOLANGCI_LINT) run $(MODULES)

$(GOLANGCI_LINT):
	GOBIN=$(abspath $(BIN)/tools) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	mv $(BIN)/tools/golangci-lint $@

fmt:
	gofmt -w listener processor shared scripts

clean:
	rm -rf $(BIN)
