# didnode: two commands on a fresh machine with only Python 3.11+:
#   make run    creates .venv, installs, starts a node (LMDB in ./var/node, gRPC on 127.0.0.1:50051)
#   make test   creates .venv, installs, checks generated code, runs the whole suite
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
DATA    ?= var/node
LISTEN  ?= 127.0.0.1:50051
NETWORK ?= local
PYTEST_ARGS ?=

.PHONY: run test venv proto proto-check bench bench-quick clean cluster cluster-stop

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,cluster]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/didnode serve --data $(DATA) --listen $(LISTEN) --network $(NETWORK)

test: $(STAMP) proto-check
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Generated code lives in didnode/api/v1 and is never edited by hand.
proto: $(STAMP)
	$(BIN)/python tools/gen_proto.py --out didnode/api/v1

# CI fails when the committed generated code differs from what proto/ produces.
proto-check: $(STAMP)
	$(BIN)/python tools/gen_proto.py --check didnode/api/v1

# Each script prints its figures as one JSON object on its last line.
BENCHES := ledger transparency credentials auth provision cluster

bench: $(STAMP)
	@for b in $(BENCHES); do echo "== bench/$$b.py"; $(BIN)/python bench/$$b.py | tail -n 1 || exit 1; done

bench-quick: $(STAMP)
	$(BIN)/python bench/ledger.py --prefill 20000 --n 5000 | tail -n 1
	$(BIN)/python bench/credentials.py | tail -n 1

# Three nats-servers (JetStream R3, sync_interval: always) and three didnodes on loopback,
# data under var/cluster; cluster-stop stops exactly the processes cluster started (docs/cluster.md).
cluster: $(STAMP)
	$(BIN)/python tools/cluster.py start --network $(NETWORK)

cluster-stop:
	$(PY) tools/cluster.py stop

clean:
	rm -rf $(VENV) build *.egg-info
