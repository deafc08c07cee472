# pyflannel: `make demo` and `make test` install what they need (as root on Debian 12),
# idempotently, then run. `make bench` runs the benchmarks (plugin calls, pod churn, throughput).
# `make build` builds the shipped executables into build/dist/ (build/README.md).

VENV        ?= .venv
# Debian's own interpreter, not whichever python3 is first on PATH: it is built with PGO
# and LTO, and the plugin (started for every pod) spends most of its CPU starting Python:
# about 15% less per start than a plain source build (bench/README.md).
PYTHON      ?= /usr/bin/python3
PY          := $(VENV)/bin/python
STAMP       := $(VENV)/.installed
APT_PACKAGES := iproute2 iptables containernetworking-plugins golang-go \
                golang-github-appc-cni-dev etcd-server etcd-client iperf3 iputils-ping curl \
                python3-venv python3-pip libpython3.11 ca-certificates strace \
                binutils openvpn wireguard-go wireguard-tools  # PyInstaller: objdump, strip,
                # and libpython3.11 (the shared library it bundles);
                # strace: the kill-anywhere test; openvpn, wireguard-go and wireguard-tools
                # (wg): bench/throughput.py's reference tunnels

.PHONY: demo down cnitool test build bench deps install lint clean

# `make demo KEEP=1` leaves the cluster up and prints how to look at it; `make down` removes it.
# The demo runs what ships: the built plugin and daemon.
demo: install build
	PYFLANNEL_CNI_BIN=$(CURDIR)/build/dist/pyflannel/pyflannel \
	PYFLANNEL_FLANNELD_BIN=$(CURDIR)/build/dist/flanneld/flanneld \
	$(PY) -m lab.demo $(if $(filter-out 0 no false,$(KEEP)),--keep)

down:
	$(if $(wildcard $(PY)),$(PY),$(PYTHON)) -m lab.demo --down

# libcni's command-line driver, built offline from Debian's libcni source (README: cnitool).
cnitool: deps
	$(PYTHON) -m tests.support.cnitool

test: install lint
	$(PY) -m pytest -q

# The shipped executables (PyInstaller onedir bundles), rebuilt only when an input changed.
build: install
	$(PY) -m build.freeze

bench: install build
	$(PY) -m bench.cni_add_del --plugin built=build/dist/pyflannel/pyflannel \
	    --plugin venv=$(VENV)/bin/pyflannel
	$(PY) -m bench.cni_churn --plugin built=build/dist/pyflannel/pyflannel
	$(PY) -m bench.throughput

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

install: deps $(STAMP)

deps:
	@if [ "$$(id -u)" != 0 ]; then echo "run as root: pyflannel creates network namespaces" >&2; exit 1; fi
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
	    | grep -q '^install ok installed$$' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "installing Debian packages:" $$missing; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

# A regular (not editable) install: the plugin is exec'd per pod, and an editable
# install's import hook costs it ~10 ms at every start. Reinstalled when a source changes.
SOURCES := $(shell find cni flanneld -name '*.py' 2>/dev/null)

$(STAMP): pyproject.toml $(SOURCES)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q '.[test,build]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) build/dist build/work tests/cnitool/bin
