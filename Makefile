# LIFT-CAM reproduction. `make reproduce` and `make test` work on a fresh machine with python3 and make:
# they create .venv (or use VENV=/path/to/env), install the package once, then run.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON  ?= python3
VENV    ?= .venv
PROFILE ?= demo
BIN     := $(VENV)/bin
PY      := $(BIN)/python
STAMP   := $(VENV)/.liftcam-installed
PIP     := $(PY) -m pip --disable-pip-version-check --no-input

# the notebooks, in execution order, from their file names (NN_verb_object.ipynb)
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
BUILD     := build/notebooks/$(PROFILE)
EXECUTED  := $(patsubst notebooks/%,$(BUILD)/%,$(NOTEBOOKS))
LIB       := $(shell find lib -name '*.py') data/samples.json

.PHONY: help env reproduce test bench clean

help: ## list the targets
	@grep -hE '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'
	@echo "  variables: PROFILE=$(PROFILE) (params/<profile>.yaml), VENV=$(VENV), PYTHON=$(PYTHON)"

env: $(STAMP) ## create the environment and install the package (once)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing liftcam and its dependencies into $(VENV) (a few minutes the first time) ..."
	@$(PIP) install --quiet -e '.[dev]' 2> >(grep -v "^WARNING: Location" >&2)
	@$(PY) -m ipykernel install --sys-prefix --name liftcam --display-name "Python (liftcam)" > /dev/null
	@touch $@

reproduce: $(EXECUTED) ## run every notebook in order on params/<PROFILE>.yaml; figures and tables into figures/
	@echo "executed notebooks: $(BUILD)/; figures and tables: figures/"

# a notebook reruns when it, its profile or the library changes; a finished one is not recomputed
$(BUILD)/%.ipynb: notebooks/%.ipynb params/$(PROFILE).yaml $(LIB) | $(STAMP)
	@mkdir -p $(@D)
	@echo "== $< ($(PROFILE))"
	@$(BIN)/papermill $< $(@:.ipynb=.partial.ipynb) -f params/$(PROFILE).yaml -p profile $(PROFILE) \
	    -k python3 --cwd . --log-level ERROR --no-progress-bar
	@mv $(@:.ipynb=.partial.ipynb) $@

# each notebook runs after the one before it (they talk through files on disk)
$(foreach i,$(wordlist 2,$(words $(EXECUTED)),$(shell seq 1 $(words $(EXECUTED)))),\
  $(eval $(word $(i),$(EXECUTED)): $(word $(shell expr $(i) - 1),$(EXECUTED))))

test: $(STAMP) ## run the tests, including every notebook on the smoke profile
	@$(PY) -m pytest -q

bench: $(STAMP) ## time every method on the offline model (seconds per image, ratios to Grad-CAM)
	@$(PY) benchmarks/methods.py

clean: ## remove executed notebooks and caches (keeps .venv and figures/)
	rm -rf build data/cache .pytest_cache
	find . -name __pycache__ -type d -prune -not -path './$(VENV)/*' -exec rm -rf {} +
