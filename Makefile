# The README's two commands: `make run` and `make test`. Every step is idempotent and
# silent when there is nothing to do (stamp files record what was installed from what).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PIP_STAMP := $(VENV)/.belka-installed
NPM_STAMP := node_modules/.belka-installed
DEFAULT_MODEL := models/mobilenet-v2/manifest.json
DETECTOR_STAMP := .make/coco-ssd
HOST ?= 127.0.0.1
PORT ?= 8000
# The tests need the test tools and Ray Serve (`belka serve --engine ray` is tested too); the
# Docker image installs without either: `make setup PIP_EXTRAS=`.
PIP_EXTRAS ?= [test,ray]

.PHONY: run test setup models chromium bench clean

run: setup models
	@echo "Belka is starting on http://$(HOST):$(PORT)/  (Ctrl-C to stop)"
	@$(BIN)/belka serve --host $(HOST) --port $(PORT)

test: setup chromium
	@$(BIN)/python -m pytest -q -n 2 --dist loadgroup

setup: $(PIP_STAMP) $(NPM_STAMP)
	@:

$(PIP_STAMP): pyproject.toml constraints.txt
	@echo "Setting up the Python environment in $(VENV)/ (TensorFlow is large: a few minutes the first time) ..."
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.$(PIP_EXTRAS)' 2>&1 \
		| { grep -v "^WARNING: Location .* is ignored" || true; }; test $${PIPESTATUS[0]} -eq 0
	@touch $@

$(NPM_STAMP): package.json package-lock.json
	@echo "Installing TF.js from npm (node_modules/) ..."
	@npm ci --silent --no-audit --no-fund 2>&1 | { grep -v "nodedir\|install-scripts" || true; }; test $${PIPESTATUS[0]} -eq 0
	@touch $@

# The default model: ImageNet weights when they can be downloaded, else untrained ones (said loudly).
# The detector for /detect: COCO SSD from the model zoo when it can be downloaded; offline it is
# skipped once (the page then says how to add one; `rm .make/coco-ssd` tries again).
models: $(DEFAULT_MODEL) $(DETECTOR_STAMP)
	@:

# (A failed download, exit 4, is handled here: its error line, written for someone running the
# command by hand, is left out, and the banner says what happens instead.)
$(DETECTOR_STAMP): | setup
	@mkdir -p $(@D)
	@$(BIN)/belka convert coco-ssd --quiet 2>&1 | grep -v '^belka: error: Could not download'; \
	status=$${PIPESTATUS[0]}; \
	if [ $$status -eq 4 ]; then \
		echo "(No internet for the COCO SSD detector: the /detect page will say how to add one.)"; \
	elif [ $$status -ne 0 ]; then exit $$status; fi
	@touch $@

$(DEFAULT_MODEL): | setup
	@$(BIN)/belka convert mobilenet-v2 --weights imagenet 2>&1 | grep -v '^belka: error: Could not download'; \
	status=$${PIPESTATUS[0]}; \
	if [ $$status -eq 4 ]; then \
		echo ""; \
		echo "!!! No internet for the ImageNet weights: building MobileNetV2 with UNTRAINED weights instead."; \
		echo "!!! The demo works end to end but its predictions are meaningless (the page says so too)."; \
		echo "!!! With internet later: rm -r models/mobilenet-v2 && make run"; \
		echo ""; \
		$(BIN)/belka convert mobilenet-v2 --weights none; \
	else exit $$status; fi

# Debian's Chromium for the browser tests (Playwright drives /usr/bin/chromium; its own download fails offline).
chromium:
	@command -v chromium >/dev/null || { \
		echo "Installing Debian's chromium for the browser tests ..."; \
		SUDO=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }

bench: setup chromium
	@$(BIN)/python bench/convert_bench.py
	@$(BIN)/python bench/browser_bench.py
	@$(BIN)/python bench/load_bench.py
	@$(BIN)/python bench/explain_bench.py
	@$(BIN)/python bench/detect_bench.py
	@$(BIN)/python bench/page_bench.py
	@$(BIN)/python bench/float16_bench.py
	@$(BIN)/python bench/runtime_bench.py

clean:
	rm -rf $(VENV) node_modules .pytest_cache .cache
