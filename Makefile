# LIFT-CAM reproduction. `make reproduce` and `make test` work on a fresh machine with python3 and make:
# they create .venv (or use VENV=/path/to/env), install the package once, then run.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON  ?= python3
VENV    ?= .venv
PROFILE ?= demo
# the ILSVRC-2012 validation folder of the paper profiles (make reproduce PROFILE=vgg16 IMAGENET=/path)
IMAGENET ?=
export IMAGENET
BIN     := $(VENV)/bin
PY      := $(BIN)/python
STAMP   := $(VENV)/.liftcam-installed
PIP     := $(PY) -m pip --disable-pip-version-check --no-input

# the notebooks, in execution order, from their file names (NN_verb_object.ipynb)
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
BUILD     := build/notebooks/$(PROFILE)
EXECUTED  := $(patsubst notebooks/%,$(BUILD)/%,$(NOTEBOOKS))
# the default profile's executed notebooks are tracked, for readers who run nothing
SHOWCASE  := $(if $(filter demo,$(PROFILE)),notebooks/executed,$(BUILD))
REPORT    := $(if $(filter demo,$(PROFILE)),REPORT.md,$(BUILD)/REPORT.md)
LIB       := $(shell find lib -name '*.py') data/samples.json data/imagenet_wnids.txt data/paper_claims.yaml

.PHONY: help env reproduce check-inputs test bench clean

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

reproduce: check-inputs $(EXECUTED) ## run every notebook in order on params/<PROFILE>.yaml; figures, tables and REPORT.md
	@echo "executed notebooks: $(SHOWCASE)/; figures and tables: see params/$(PROFILE).yaml (figures_dir); report: $(REPORT)"

# the paper profiles need torchvision weights and ImageNet: say what is missing before any work
check-inputs: | $(STAMP)
	@if [ "$(PROFILE)" = vgg16 ] || [ "$(PROFILE)" = resnet50 ]; then \
	    $(PY) -m liftcam check-inputs "$(PROFILE)" $(IMAGENET) || exit 1; fi

# a notebook reruns when it, its profile or the library changes; a finished one is not recomputed
$(BUILD)/%.ipynb: notebooks/%.ipynb params/$(PROFILE).yaml $(LIB) | $(STAMP) check-inputs
	@mkdir -p $(@D)
	@echo "== $< ($(PROFILE))"
	@$(BIN)/papermill $< $(@:.ipynb=.partial.ipynb) -f params/$(PROFILE).yaml -p profile $(PROFILE) \
	    -p report_path $(REPORT) -k python3 --cwd . --log-level ERROR --no-progress-bar
	@$(PY) -c "import sys, liftcam.report as r; r.tidy_executed(sys.argv[1])" $(@:.ipynb=.partial.ipynb)
	@mkdir -p $(SHOWCASE) && cp $(@:.ipynb=.partial.ipynb) $(SHOWCASE)/$(@F)
	@mv $(@:.ipynb=.partial.ipynb) $@

# each notebook runs after the one before it (they talk through files on disk)
$(foreach i,$(wordlist 2,$(words $(EXECUTED)),$(shell seq 1 $(words $(EXECUTED)))),\
  $(eval $(word $(i),$(EXECUTED)): $(word $(shell expr $(i) - 1),$(EXECUTED))))

test: $(STAMP) ## lint, then run the tests, including every notebook on the smoke profile
	@$(BIN)/ruff check lib tests benchmarks
	@$(PY) -m pytest -q

bench: $(STAMP) ## time every method side by side with pytorch-grad-cam, torchcam, captum and shap; cost floors (figures/bench/)
	@$(PY) benchmarks/side_by_side.py

clean: ## remove executed notebooks and caches (keeps .venv and figures/)
	rm -rf build data/cache .pytest_cache
	find . -name __pycache__ -type d -prune -not -path './$(VENV)/*' -exec rm -rf {} +
