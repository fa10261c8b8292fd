# Everything installs into .venv/ at the repo root; nothing system-wide.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 7865
HOSTS ?= 127.0.0.1 localhost
export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: serve test test-python test-node lint bench fuzz soak krita-plugin photoshop-plugin dist tiny clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# CPU wheel from local disk where present; on other machines this is PyPI's default build for the platform.
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q "torch==2.13.0" || $(PIP) install -q "torch>=2.4,<3"
	# `ray`: the Ray Serve backend, tested against a real local cluster (tests/api/test_server_ray.py).
	$(PIP) install -q -c constraints.txt -e ".[dev,ray,train]"
	touch $(STAMP)

serve: $(STAMP)
	$(VENV)/bin/acetate serve --host $(HOST) --port $(PORT)

test: test-python test-node

# CI (`CI` set) also lists the 15 slowest tests.
test-python: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q $(if $(CI),--durations=15) tests

photoshop_uxp/node_modules/.package-lock.json: photoshop_uxp/package-lock.json
	cd photoshop_uxp && npm ci --no-audit --no-fund

test-node: $(STAMP) photoshop_uxp/node_modules/.package-lock.json
	cd photoshop_uxp && ACETATE_PYTHON=$(abspath $(PY)) npm test

lint: $(STAMP)
	$(VENV)/bin/ruff check server tests bench krita_plugin
	$(VENV)/bin/ruff format --check server tests bench krita_plugin
	$(VENV)/bin/vermin --target=3.10- --no-tips --violations krita_plugin/acetate_krita
	$(VENV)/bin/mypy server/acetate

bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) bench/decoder.py
	HF_HUB_OFFLINE=1 $(PY) bench/decoder.py --size 1024
	HF_HUB_OFFLINE=1 $(PY) bench/memory.py
	HF_HUB_OFFLINE=1 $(PY) bench/export.py
	HF_HUB_OFFLINE=1 $(PY) bench/modes.py
	HF_HUB_OFFLINE=1 $(PY) bench/scene.py
	HF_HUB_OFFLINE=1 $(PY) bench/decompose.py
	HF_HUB_OFFLINE=1 $(PY) bench/server.py
	HF_HUB_OFFLINE=1 $(PY) bench/train.py
	HF_HUB_OFFLINE=1 $(PY) bench/ray.py

# Long fuzzing (not in `make test`, whose run of the same tests is short): schemathesis over
# every operation of /api/openapi.json and hypothesis over the WebSocket protocol; prints the
# case counts and the responses >= 500 (must be 0). FUZZ_EXAMPLES is per HTTP operation.
FUZZ_EXAMPLES ?= 1500
FUZZ_WS_EXAMPLES ?= 2000
fuzz: $(STAMP)
	HF_HUB_OFFLINE=1 ACETATE_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) ACETATE_FUZZ_WS_EXAMPLES=$(FUZZ_WS_EXAMPLES) \
		$(PY) -m pytest -q -s -p no:cacheprovider --timeout=7200 tests/api/test_server_fuzz.py tests/api/test_ws_fuzz.py

# Soak (not in tests): N clients submitting and cancelling on the tiny models; prints RSS, open
# file descriptors and task counts over time. SOAK_MINUTES=30 for the full run.
SOAK_MINUTES ?= 30
soak: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) bench/soak.py --minutes $(SOAK_MINUTES)

tiny: $(STAMP)
	$(VENV)/bin/acetate models tiny

krita-plugin: $(STAMP)
	$(PY) krita_plugin/build.py

photoshop-plugin: $(STAMP)
	$(PY) photoshop_uxp/build.py --port $(PORT) --hosts "$(HOSTS)" $(if $(TLS),--tls)

# Release artifacts in dist/: sdist + wheel (python -m build), the Krita zip, the Photoshop .ccx
# (default port and hosts) and SHA256SUMS; the same sources give the same bytes.
dist: $(STAMP)
	$(PY) .ci/dist.py --out dist

clean:
	rm -rf dist build .pytest_cache
