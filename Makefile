# lcfusion — set-up, demo, tests and packaging on Debian 12 and 13.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check
# Without an NVIDIA GPU, torch comes from PyTorch's CPU index (a fraction of PyPI's CUDA build).
TORCH := $(shell grep -m1 '^torch==' requirements.txt)
TORCH_CPU_INDEX := https://download.pytorch.org/whl/cpu
QGIS ?= 3.44
SYSTEM_PYTHON := /usr/bin/python3
APT_PACKAGES := qgis python3-qgis qgis-providers python3-gdal python3-rasterio python3-scipy gdal-bin \
	openmpi-bin python3-mpi4py xvfb python3-venv openssh-server openssh-client rsync slurm-wlm munge \
	python3-pyqt6 procps
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEMO_DIR ?= demo-output
ACCURACY_DIR ?= accuracy-output
ACCURACY_CONFIG ?= full
# Seeded splits: 5 (2 with the quick configuration).
ACCURACY_REPEATS ?= $(if $(filter quick,$(ACCURACY_CONFIG)),2,5)
CHOOSE_DIR ?= choice-output
CHOOSE_REPEATS ?= 2
BENCH_DIR ?= bench
BENCH_CONFIG ?= default
# pytest-xdist workers for make test (each test module on one worker, so its module-scoped
# fixtures are built once; 0 runs the suite in one process). On the 2-core development machine
# 2 workers took 16.8 minutes against 20.4 in one process (same code, 2026-12-06): the other
# core works while a test waits on a subprocess, mpirun, Slurm or sshd. 4 workers were slower
# than one process (26.5 against 19.5 minutes, earlier).
TEST_WORKERS ?= 2
# The workers' torch threads wait at OpenMP barriers asleep, not spinning: two workers each
# training on both cores otherwise spend half their time spinning against each other (a subset
# of 63 tests, 2 workers: 262 s -> 136 s, 2026-12-06). For the tests only: a run alone is
# faster spinning, so make bench, demo and the engine keep OpenMP's default.
TEST_OPENMP := OMP_WAIT_POLICY=PASSIVE
# Headless QGIS, the plugin importable as `lcfusion` through the build/lcfusion link.
RUN_ENV := QT_QPA_PLATFORM=offscreen XDG_RUNTIME_DIR=$${XDG_RUNTIME_DIR:-/tmp/runtime-$$(id -u)} \
	PYTHONPATH=$(CURDIR)/build QGIS_PLUGINPATH=$(CURDIR)/build LCFUSION_PYTHON=$(abspath $(PY))

# pip install, one distribution at a time: PyPI's Linux torch is the CUDA build, with its NVIDIA
# libraries some 3 GB of wheels, which one pip run keeps on disk beside the 5 GB they unpack to
# (a disk with 8 GB free fails half-way). pip resolves the set once from the packages' metadata
# (--dry-run --report), then installs each distribution, pinned, in a run of its own; the last run
# installs nothing and checks the set.
define pip_in_turn
$(PIP) --dry-run --report $(VENV)/pip-report.json $(1) && \
	for pinned in $$($(PY) -c 'import json, sys; print(*(i["metadata"]["name"] + "==" \
			+ i["metadata"]["version"] for i in json.load(open(sys.argv[1]))["install"]))' \
			$(VENV)/pip-report.json); do \
		echo "  installing $$pinned"; $(PIP) --no-deps "$$pinned" || exit 1; \
	done && rm $(VENV)/pip-report.json && $(PIP) $(1)
endef

.PHONY: setup apt demo test test-qgis accuracy choose bench lint package install clean

## setup: Debian packages, the .venv (torch CPU and test tools), the build/lcfusion link
setup: apt $(VENV)/.installed build/lcfusion

apt:
	@missing=$$(for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q "ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "Installing Debian packages:" $$missing; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install \
			-y -qq --no-install-recommends $$missing; \
	fi

$(VENV)/.installed: requirements.txt requirements-dev.txt | apt
	test -x $(PY) || $(SYSTEM_PYTHON) -m venv --system-site-packages $(VENV)
	@if $(PY) -m pip show torch 2>/dev/null | grep -q "^Version: $(patsubst torch==%,%,$(TORCH))"; then \
		echo "$(TORCH) already installed"; \
	elif command -v nvidia-smi >/dev/null; then \
		echo "NVIDIA GPU found: $(TORCH) from PyPI (CUDA build)"; \
		$(call pip_in_turn,$(TORCH)); \
	elif $(PY) -c "import urllib.request as r; r.urlopen('$(TORCH_CPU_INDEX)/torch/', timeout=10)" \
			2>/dev/null; then \
		echo "No NVIDIA GPU: $(TORCH) CPU build from $(TORCH_CPU_INDEX)"; \
		$(PIP) --index-url $(TORCH_CPU_INDEX) $(TORCH); \
	else \
		echo "No NVIDIA GPU, and $(TORCH_CPU_INDEX) is unreachable: $(TORCH) from PyPI and" \
			"pip's local wheels instead (PyPI's Linux wheel is the CUDA build, several GB: installed" \
			"one wheel at a time)"; \
		$(call pip_in_turn,$(TORCH)); \
	fi
	$(PIP) -r requirements.txt -r requirements-dev.txt
	touch $@

build/lcfusion:
	mkdir -p build && ln -sfn .. build/lcfusion

## demo: sample scene -> train FG-UNET through qgis_process -> classify -> styled map + PNG
demo: setup
	$(RUN_ENV) $(PY) tools/demo.py $(DEMO_DIR)

## test: the whole suite (engine, plugin in QGIS, qgis_process end to end, real data)
test: setup
	mkdir -p $${XDG_RUNTIME_DIR:-/tmp/runtime-$$(id -u)} && chmod 700 $${XDG_RUNTIME_DIR:-/tmp/runtime-$$(id -u)}
	$(RUN_ENV) $(PY) -m ruff check .
	$(RUN_ENV) $(TEST_OPENMP) $(PY) -m pytest -q -ra --timeout=900 --durations=30 $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadscope) \
		$(PYTEST_ARGS)

## test-qgis: the suite on Debian's QGIS, QGIS=3.40 (trixie) or 3.44 (LTR, forky), in a chroot
## cached in build/chroot-<suite> (root; debootstrap; SHARED_DIR=../shared by default)
test-qgis:
	tools/test_qgis.sh $(QGIS) $(if $(PYTEST_ARGS),'PYTEST_ARGS=$(PYTEST_ARGS)')

## accuracy: FG-UNET, MRFusion, TWINNS each against its Random Forest on the same k seeded
## splits of every labelled set, with paired tests (ACCURACY_CONFIG=full: under an hour on
## 2 cores; quick: 2 minutes) -> $(ACCURACY_DIR)/accuracy.md and accuracy.json
accuracy: setup
	$(RUN_ENV) $(PY) tools/accuracy.py $(ACCURACY_DIR) --config $(ACCURACY_CONFIG) \
		--repeats $(ACCURACY_REPEATS)

## choose: each candidate setting of the deep families against their defaults, on the
## validation polygons of 2 seeded splits -> $(CHOOSE_DIR)/choice.md and choice.json
choose: setup
	$(RUN_ENV) $(PY) tools/choose.py $(CHOOSE_DIR) --repeats $(CHOOSE_REPEATS)

## bench: speed and memory against naive code and the machine's limit, on sample scenes
## (about 20 minutes on 2 cores) -> $(BENCH_DIR)/results.json and $(BENCH_DIR)/summary.md
bench: setup
	$(RUN_ENV) $(PY) tools/bench.py --output $(BENCH_DIR) --config $(BENCH_CONFIG)

lint: setup
	$(PY) -m ruff check .

## package: dist/lcfusion-<version>.zip for QGIS "Install from ZIP"
package: setup
	$(PY) tools/package.py dist

## install: link this folder into the default QGIS profile's plugins
install:
	mkdir -p $(HOME)/.local/share/QGIS/QGIS3/profiles/default/python/plugins
	ln -sfn $(CURDIR) $(HOME)/.local/share/QGIS/QGIS3/profiles/default/python/plugins/lcfusion
	@echo "Linked. Enable 'Land Cover Fusion' in Plugins > Manage and Install Plugins."

clean:
	rm -rf build dist $(DEMO_DIR) $(ACCURACY_DIR) $(BENCH_DIR)/results.json $(BENCH_DIR)/summary.md
