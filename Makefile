# Cloudoreg: see README.md. Every target works on a machine with only Go installed.
GO      ?= go
BIN     := bin
MODULES := ./shared/... ./listener/... ./processor/... ./scripts/...
# Test timeout: generous for a 2-core CI machine under the race detector.
TEST_TIMEOUT ?= 20m

.PHONY: all build run stack demo test bench chaos vet fmt clean

all: build

build: ## bin/listener, bin/processor, bin/stack and the run/demo tools
	$(GO) build -o $(BIN)/ ./listener/cmd/listener ./processor/cmd/processor ./scripts/cmd/stack ./scripts/cmd/run ./scripts/cmd/demo

run: build ## the local stack, the listener and two processors, logs interleaved; Ctrl-C stops
	./$(BIN)/run -bin $(BIN)

stack: build ## only the local stack, in the foreground
	./$(BIN)/stack

demo: build ## start everything, create three sources, check their outcomes, stop
	./$(BIN)/demo -bin $(BIN)

chaos: build ## fault injection on the real programs, every scenario (a few minutes); see README "Reliability"
	$(GO) build -o $(BIN)/ ./scripts/cmd/chaos
	./$(BIN)/chaos -bin $(BIN)

test: vet ## every test, with the race detector, as CI runs them
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) $(MODULES)

vet:
	$(GO) vet $(MODULES)

bench: ## benchmarks (ratios against a baseline measured in the same run)
	$(GO) test -run '^$$' -bench . -benchmem $(MODULES)

fmt:
	gofmt -w listener processor shared scripts

clean:
	rm -rf $(BIN)
