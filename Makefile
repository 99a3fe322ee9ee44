# didnode: two commands on a fresh machine with only Python 3.11+:
#   make run    creates .venv, installs, starts a node (LMDB in ./var/node, gRPC on 127.0.0.1:50051,
#               HTTP on 127.0.0.1:8080: DID resolution, status lists, /metrics, /healthz, /readyz)
#   make test   creates .venv, installs, checks generated code, runs the whole suite
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
DATA    ?= var/node
LISTEN  ?= 127.0.0.1:50051
HTTP    ?= 127.0.0.1:8080
NETWORK ?= local
PYTEST_ARGS ?=

.PHONY: run test fuzz venv proto proto-check bench bench-quick bench-scale bench-keri-env clean cluster cluster-stop

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,cluster]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/didnode serve --data $(DATA) --listen $(LISTEN) --http $(HTTP) --network $(NETWORK)

test: $(STAMP) proto-check
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Fuzzing (tests/fuzz, docs/security.md): every parser of untrusted bytes, long runs (make test runs
# each briefly). FUZZ_RUNS inputs per target, or FUZZ_SECONDS of fuzzing per target (then no run
# limit); the corpus grows in var/fuzz/corpus/<target>, crash inputs land in var/fuzz/crashes/<target>.
# One target: make fuzz PYTEST_ARGS='-k proof_bundle'.
FUZZ_RUNS    ?= 100000
FUZZ_SECONDS ?= 0
fuzz: $(STAMP)
	DIDNODE_FUZZ_RUNS=$(FUZZ_RUNS) DIDNODE_FUZZ_SECONDS=$(FUZZ_SECONDS) DIDNODE_FUZZ_DIR=$(CURDIR)/var/fuzz \
		$(BIN)/python -m pytest tests/fuzz -m fuzz -p no:cacheprovider --timeout=0 -s $(PYTEST_ARGS)

# Generated code lives in didnode/api/v1 and is never edited by hand.
proto: $(STAMP)
	$(BIN)/python tools/gen_proto.py --out didnode/api/v1

# CI fails when the committed generated code differs from what proto/ produces.
proto-check: $(STAMP)
	$(BIN)/python tools/gen_proto.py --check didnode/api/v1

# Benchmarks (docs/performance.md). Each bench/*.py prints its figures as one JSON object on its
# last stdout line; bench/run_all.py runs them, prints one table (figure, reference measured in
# the same run, ratio, target) and writes bench/results/{latest,quick}.json and .png.
# keripy (the peer) and matplotlib (the plot) live in bench/.venv-keri, never in didnode's deps.
KERI_ENV := bench/.venv-keri/.installed

$(KERI_ENV): bench/requirements-bench.txt
	$(PY) bench/keri_env.py

bench-keri-env: $(KERI_ENV)

# The keripy environment is optional: without it the table says keripy is unavailable and why.
bench: $(STAMP)
	-@$(MAKE) --no-print-directory bench-keri-env
	$(BIN)/python bench/run_all.py --profile full

bench-quick: $(STAMP)
	-@$(MAKE) --no-print-directory bench-keri-env
	$(BIN)/python bench/run_all.py --profile quick

# Grows one ledger to 1,000,000 DIDs (minutes; not in CI): resolve p50/p99, node RSS, LMDB bytes per DID.
SCALE_MAX ?= 1000000
bench-scale: $(STAMP)
	-@$(MAKE) --no-print-directory bench-keri-env
	$(BIN)/python bench/scale.py --max $(SCALE_MAX)

# Three nats-servers (JetStream R3, sync_interval: always) and three didnodes on loopback,
# data under var/cluster; cluster-stop stops exactly the processes cluster started (docs/cluster.md).
cluster: $(STAMP)
	$(BIN)/python tools/cluster.py start --network $(NETWORK)

cluster-stop:
	$(PY) tools/cluster.py stop

clean:
	rm -rf $(VENV) build *.egg-info bench/.venv-keri
