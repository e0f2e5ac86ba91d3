# ha-webstack: the two commands that matter are `make lab` and `make test` (see README.md).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PYINFRA := $(VENV)/bin/pyinfra
PYTEST := $(VENV)/bin/pytest

.PHONY: lab test test-upgrade check verify deploy down status test-tools docs promtool etcd-tools mariadb-tools bench bench-tools
INVENTORY ?= inventories/lab.py

# Python deps: a virtualenv with the pinned requirements (re-made when requirements.txt changes).
$(VENV)/.installed: requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements.txt
	touch $@

## lab: everything from nothing: venv, Docker engine, images, hosts, then the full deploy.
lab: $(VENV)/.installed
	$(PY) lab/lab.py up
	$(PYINFRA) -y inventories/lab.py deploy.py
	$(PY) lab/lab.py endpoints

## deploy: re-run the deploy against the lab.
deploy: $(VENV)/.installed
	$(PYINFRA) -y inventories/lab.py deploy.py

## down: remove the lab's containers and network (the images stay for next time).
down:
	python3 lab/lab.py down

status:
	python3 lab/lab.py status

## docs: regenerate the documents made from the code (the firewall policy table).
docs: $(VENV)/.installed
	$(PY) -m webstack.policy > docs/firewall.md

## check: the fast tier, no lab needed: lint and unit tests (about two minutes).
# The database agent's tests (tests/unit/test_agent_*.py) run in a pytest of their own, without
# the conftests: tests/conftest.py imports pyinfra_cli, which replaces socket, ssl and threading
# with gevent's for the whole process. The agent runs on the plain stdlib, so its tests do too.
check: $(VENV)/.installed promtool etcd-tools mariadb-tools
	$(VENV)/bin/ruff check .
	$(VENV)/bin/actionlint .github/workflows/*.yml
	$(PYTEST) -q tests/unit --ignore-glob='tests/unit/test_agent_*.py'
	$(PYTEST) -q --noconftest tests/unit/test_agent_*.py

# promtool (from Debian's prometheus package) unit-tests the alert rules. Installing the package
# may start a Prometheus here on a machine without systemd; only promtool is wanted. pkill stays
# in this machine's PID namespace: the lab's monitor-01 runs a Prometheus of its own.
promtool:
	@command -v promtool >/dev/null || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus \
	  && { pkill -x --ns $$$$ --nslist pid prometheus || true; }; }

# etcd and etcdctl (Debian's etcd-server, etcd-client) for the real three-member cluster of
# tests/unit/test_etcd_live.py, which starts its own members. On a systemd machine the package
# starts and enables an etcd of its own: this install's, so it is stopped and disabled.
etcd-tools:
	@command -v etcd >/dev/null && command -v etcdctl >/dev/null || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    etcd-server etcd-client && { systemctl disable --now etcd 2>/dev/null || true; }; }

# mariadbd and mariadb-install-db (Debian's mariadb-server) for the throwaway local servers of
# tests/unit/db_cluster.py, which starts its own. The package starts and enables a server of its
# own: this install's, so it is stopped and disabled (systemd), or stopped (no systemd).
mariadb-tools:
	@command -v mariadbd >/dev/null && command -v mariadb-install-db >/dev/null || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends mariadb-server mariadb-client && { \
	    systemctl disable --now mariadb 2>/dev/null || service mariadb stop 2>/dev/null \
	    || true; }; }

# Tools the tests use on the control machine (Debian packages): a browser for the status page,
# a MariaDB client for logins made from inside a lab host's network namespace.
test-tools: promtool etcd-tools mariadb-tools
	@command -v chromium >/dev/null && command -v mariadb >/dev/null || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    chromium mariadb-client; }

## verify: the read-only specs against any inventory, over SSH as the deploy's user; changes
## nothing (make verify INVENTORY=inventories/prod.py). Needs no Docker.
verify: $(VENV)/.installed
	INVENTORY=$(INVENTORY) $(PYTEST) -m readonly -p no:cacheprovider tests

## test: a fresh lab, the full deploy, then every test (fast checks, specs, end-to-end).
test: $(VENV)/.installed test-tools
	$(VENV)/bin/ruff check .
	$(PY) lab/lab.py up --fresh
	$(PYINFRA) -y inventories/lab.py deploy.py
	$(PYTEST) -v --ignore-glob='tests/unit/test_agent_*.py'
	$(PYTEST) -v --noconftest tests/unit/test_agent_*.py
	LAB_DB_FAILOVER=automatic LAB_DB_ANTI_FLAP_S=0 $(PYTEST) -v -m 'failover or readonly' \
	  tests/test_db_agent.py

## test-upgrade: a fresh Debian 12 lab, the full deploy, then the rolling upgrade of every host to
## Debian 13 under load (tests/test_upgrade.py, docs/upgrades.md; about 25 minutes).
test-upgrade: $(VENV)/.installed test-tools
	LAB_DEBIAN=bookworm LAB_DEBIAN_HOSTS= $(PY) lab/lab.py up --fresh
	$(PYINFRA) -y inventories/lab.py deploy.py
	$(PYTEST) -v -rP -m upgrade tests/test_upgrade.py

# Load generators on the control machine (Debian packages): wrk for the data plane, sysbench for
# the replication-lag load (run inside web-01's network namespace: only app servers reach MariaDB).
bench-tools:
	@command -v wrk >/dev/null && command -v sysbench >/dev/null && command -v nsenter >/dev/null \
	  || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends wrk sysbench util-linux; }

## bench: drills and benchmarks on the lab (rebuilds it fresh first; about an hour): writes
## bench/results/<date>-<release>.json, docs/benchmarks.md and docs/benchmarks/*.png.
## See bench/README.md.
bench: $(VENV)/.installed bench-tools
	$(PY) bench/run.py
