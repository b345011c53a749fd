# Every target installs into .venv first when it is missing or pyproject.toml changed.
VENV   ?= .venv
PYTHON ?= python3
STAMP  := $(VENV)/.installed-stamp

.PHONY: install run test load bench bench-history bench-presence attack chaos lint format clean

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## run: private redis-server (unless REDIS_URL is set; CLUSTER=1: a local Redis Cluster),
## the auth service and the chat instances
run: $(STAMP)
	CLUSTER=$(CLUSTER) $(VENV)/bin/python scripts/run_stack.py

## The centrifuge npm SDK the suite drives under Node (tests/sdk/js), installed as locked
JS_SDK   := tests/sdk/js
JS_STAMP := $(JS_SDK)/node_modules/.installed-stamp
$(JS_STAMP): $(JS_SDK)/package-lock.json
	@command -v npm >/dev/null || { echo "make: npm (Node.js 20+) is needed for the Centrifugo JS SDK tests; install nodejs and npm"; exit 1; }
	cd $(JS_SDK) && npm ci --no-audit --no-fund --ignore-scripts
	touch $(JS_STAMP)

## test: the whole suite against a redis-server it starts itself (REDIS_URL to use another)
test: $(STAMP) $(JS_STAMP)
	$(VENV)/bin/pytest -m "not slow and not load"

## load: the load tests (not part of make test); they print their figures
load: $(STAMP)
	$(VENV)/bin/pytest -m load -s tests/load

## bench: ours, the bare reference, python-socketio, Node.js Socket.IO and Django Channels,
## side by side
BENCH_STAMP := $(VENV)/.installed-bench-stamp
$(BENCH_STAMP): $(STAMP)
	$(VENV)/bin/pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

## The Node.js Socket.IO peer's npm packages (bench/peers/node_socketio), installed as locked
NODE_PEER       := bench/peers/node_socketio
NODE_PEER_STAMP := $(NODE_PEER)/node_modules/.installed-stamp
$(NODE_PEER_STAMP): $(NODE_PEER)/package-lock.json
	@command -v npm >/dev/null || { echo "make: npm (Node.js 20+) is needed for the Node.js Socket.IO peer of make bench; install nodejs and npm"; exit 1; }
	cd $(NODE_PEER) && npm ci --no-audit --no-fund --ignore-scripts
	touch $(NODE_PEER_STAMP)

bench: $(BENCH_STAMP) $(NODE_PEER_STAMP)
	$(VENV)/bin/python -m bench.run $(BENCH_ARGS)

## bench-history: what history costs: the append (in Redis) and a 1,000-socket since storm
bench-history: $(BENCH_STAMP)
	$(VENV)/bin/python -m bench.history

## bench-presence: one join and one presence query in a room of 10,000 present users
bench-presence: $(BENCH_STAMP)
	$(VENV)/bin/python -m bench.presence

## attack: the security assessment's attacks against one tree (ATTACK_ARGS: --source DIR,
## --label NAME, --scenarios slow,revoke,frames,handshakes, --quick); see bench/README.md
attack: $(STAMP)
	$(VENV)/bin/python -m bench.attack $(ATTACK_ARGS)

## chaos: the stack as real processes under faults for CHAOS_ARGS (default 60 s); one verdict
## line: sent, delivered, lost, duplicated, out of order, gaps announced (see docs/reliability.md);
## CLUSTER=1: on a local Redis Cluster, with a primary killed
chaos: $(STAMP)
	$(VENV)/bin/python -m chaos $(if $(filter 1,$(CLUSTER)),--cluster) $(CHAOS_ARGS)

## lint: ruff (lint + format check) and mypy --strict
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) .run .mypy_cache .ruff_cache *.egg-info
