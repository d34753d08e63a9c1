# Switchyard: `make run` starts it on embedded defaults, `make test` runs every test.
# One cargo profile (release) and one target dir outside the clone, shared by all
# targets, so librdkafka and the dependency tree are built once per machine.

export CARGO_TARGET_DIR ?= $(HOME)/.cache/switchyard/target
CARGO ?= cargo
BIN := $(CARGO_TARGET_DIR)/release/switchyard
CONFIG ?= examples/switchyard.toml

.DEFAULT_GOAL := help
.PHONY: help build run test test-tools tansu lint fmt bench chaos fuzz clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

build: ## build the switchyard binary (release; the same feature set as the tests, so nothing is built twice)
	$(CARGO) build --release --locked --workspace --bins --examples

run: build ## run ingest + router on embedded defaults (in-memory broker, http://127.0.0.1:8080) with a local webhook sink
	@$(BIN) sink --listen 127.0.0.1:9000 & sink=$$!; trap "kill $$sink 2>/dev/null" EXIT INT TERM; \
	  $(BIN) run --config $(CONFIG)

test: test-tools lint ## every test: unit, integration (real Kafka via tansu), end to end (Segment Python client), Helm chart, short chaos and fuzz runs
	$(CARGO) nextest run --release --locked --workspace --no-fail-fast
	python3 helm/tests/test_chart.py
	python3 scripts/chaos.py --short
	scripts/fuzz.sh 60

test-tools: ## install what the tests need when missing (tansu broker, Segment Python client)
	@scripts/ensure-test-tools.sh

tansu: ## install the tansu Kafka broker (about 20 minutes, once per machine)
	@scripts/ensure-test-tools.sh tansu

lint: ## rustfmt check, clippy with warnings as errors, and the supply-chain policy (deny.toml)
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --locked --workspace --all-targets -- -D warnings
	@# deny reads every package of every platform; the build downloads only this one's.
	$(CARGO) fetch --locked --quiet
	$(CARGO) deny --offline --log-level error check bans licenses sources
	@# The control plane validates configuration without the data path (ARCHITECTURE.md).
	@! $(CARGO) tree --locked --offline -p switchyard-control -e normal,build | grep -E 'rdkafka|switchyard-(actors|ingest|archive|warehouse|router) ' \
	  || { echo "switchyard-control must not depend on the data path (above)"; exit 1; }

fmt: ## format the code
	$(CARGO) fmt --all

bench: test-tools ## ingest and router benchmarks beside bare baselines; writes target/bench-report.md
	@scripts/bench.sh

chaos: build ## fault injection under load (router kill -9, broker restart, destination outage, S3 unavailable, metadata database unavailable, rebalance, backlogs, a native destination answering partial failures and 429s): lost/duplicated/delayed per scenario
	python3 scripts/chaos.py $(CHAOS_ARGS)

fuzz: ## fuzz the event parser, the ingest request path and the admin API, FUZZ_SECONDS (600) each
	scripts/fuzz.sh $(or $(FUZZ_SECONDS),600)

clean: ## remove build output
	$(CARGO) clean
