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
# overrides, merged over the profile in this order: PARAMS=file.yaml (any keys), then EVAL_IMAGES=n (a seeded
# subset of n images: run a few hundred first), LIFTCAM_CACHE (the caches' root, over the profile's cache_dir)
PARAMS      ?=
EVAL_IMAGES ?=
# the ILSVRC bbox XML folder (or LOC_val_solution.csv) when it is not in or beside IMAGENET
ANNOTATIONS ?=
export IMAGENET_ANNOTATIONS := $(ANNOTATIONS)
# a key of the run: the override file's value, else the profile's (`key: value  # comment`)
param     = $(firstword $(shell awk '/^$(1):/{sub(/^$(1): */, ""); sub(/ *\#.*/, ""); print; exit}' $(PARAMS) params/$(PROFILE).yaml 2>/dev/null))
MODEL     := $(call param,model)
OVERRIDES := $(if $(PARAMS),-f $(PARAMS)) $(if $(EVAL_IMAGES),-p eval_images $(EVAL_IMAGES)) \
             $(if $(LIFTCAM_CACHE),-p cache_dir $(LIFTCAM_CACHE))
BIN     := $(VENV)/bin
PY      := $(BIN)/python
STAMP   := $(VENV)/.liftcam-installed
PIP     := $(PY) -m pip --disable-pip-version-check --no-input

# the notebooks, in execution order, from their file names (NN_verb_object.ipynb)
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
# notebooks that run once per profile (the toy derivation, the report); the others run once per setting
ONCE      := notebooks/01_derive_linear_explanation_model.ipynb notebooks/09_write_reproduction_report.ipynb
PER       := $(filter-out $(ONCE),$(NOTEBOOKS))
# a profile's settings: the names listed under `settings:` in params/<profile>.yaml, each with its own
# overrides in params/<profile>/<name>.yaml (layer, figures folder, budgets); none: the profile is one setting
SETTINGS  := $(shell awk '/^settings:/{on=1; next} on && /^ *- /{sub(/^ *- */, ""); sub(/ *#.*/, ""); print; next} on{on=0}' params/$(PROFILE).yaml 2>/dev/null)
BUILD     := build/notebooks/$(PROFILE)
# the default profile's executed notebooks are tracked, for readers who run nothing
SHOWCASE  := $(if $(filter demo,$(PROFILE)),notebooks/executed,$(BUILD))
REPORT    := $(if $(filter demo,$(PROFILE)),REPORT.md,$(BUILD)/REPORT.md)
LIB       := $(shell find lib -name '*.py') data/samples.json data/imagenet_wnids.txt data/paper_claims.yaml
# the notebooks rerun when the overrides change: their text is kept in $(BUILD)/overrides.txt, rewritten only on a change
ifneq ($(filter reproduce $(BUILD)/%,$(MAKECMDGOALS)),)
$(shell mkdir -p $(BUILD) && (echo '$(strip $(OVERRIDES))' | cmp -s - $(BUILD)/overrides.txt || echo '$(strip $(OVERRIDES))' > $(BUILD)/overrides.txt))
LIB       += $(BUILD)/overrides.txt $(PARAMS)
endif
# build/notebooks/<profile>/[<setting>/]NN_name.ipynb: the per-setting chains, then the once-per-profile ones
CHAINS    := $(if $(SETTINGS),$(foreach t,$(SETTINGS),$(patsubst notebooks/%,$(BUILD)/$(t)/%,$(PER))),\
                               $(patsubst notebooks/%,$(BUILD)/%,$(PER)))
EXECUTED  := $(patsubst notebooks/%,$(BUILD)/%,$(filter %01_derive_linear_explanation_model.ipynb,$(ONCE))) \
             $(CHAINS) $(patsubst notebooks/%,$(BUILD)/%,$(filter %09_write_reproduction_report.ipynb,$(ONCE)))

.PHONY: help env reproduce check-inputs test bench clean

help: ## list the targets
	@grep -hE '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'
	@echo "  variables: PROFILE=$(PROFILE) (params/<profile>.yaml), VENV=$(VENV), PYTHON=$(PYTHON)"
	@echo "  paper runs: IMAGENET=/path/to/val, EVAL_IMAGES=n, PARAMS=overrides.yaml, ANNOTATIONS=/path/to/xml"

env: $(STAMP) ## create the environment and install the package (once)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing liftcam and its dependencies into $(VENV) (a few minutes the first time) ..."
	@$(PIP) install --quiet -e '.[dev]' 2> >(grep -v "^WARNING: Location" >&2)
	@$(PY) -m ipykernel install --sys-prefix --name liftcam --display-name "Python (liftcam)" > /dev/null
	@touch $@

reproduce: check-inputs $(EXECUTED) ## run every notebook in order on params/<PROFILE>.yaml; figures, tables and REPORT.md
	@echo "executed notebooks: $(SHOWCASE)/; figures and tables: see params/$(PROFILE).yaml (figures_dir); report: $(REPORT)"

# the paper models need torchvision weights and ImageNet (keyed on the profile's model:, so a copy of a paper
# profile is checked too): say what is missing before any work
CHECK_EVAL   := $(or $(EVAL_IMAGES),$(filter-out null,$(call param,eval_images)))
CHECK_FOLDER := $(or $(filter-out imagenet samples null,$(call param,images)),$(IMAGENET))
check-inputs: | $(STAMP) ## check a paper profile's weights and ImageNet folder (also run by make reproduce)
	@if [ "$(MODEL)" = vgg16 ] || [ "$(MODEL)" = resnet50 ]; then \
	    $(PY) -m liftcam check-inputs "$(MODEL)" $(CHECK_FOLDER) $(if $(ANNOTATIONS),--annotations "$(ANNOTATIONS)") \
	        $(if $(CHECK_EVAL),--eval-images $(CHECK_EVAL)) || exit 1; fi

# one notebook run: $(1) output, $(2) source notebook, $(3) extra parameter files (-f ...); one line per
# notebook with its time. The kernel's "running over TCP without encryption" warning is filtered out: the
# kernel only listens on localhost for this one run, and nothing in it is for the user to act on.
define papermill
	@mkdir -p $(dir $(1)) $(dir $(SHOWCASE)/$(patsubst $(BUILD)/%,%,$(1)))
	@printf '%s ... ' "== $(2) ($(PROFILE)$(if $(4), $(4)))"; start=$$SECONDS; \
	$(BIN)/papermill $(2) $(1:.ipynb=.partial.ipynb) -f params/$(PROFILE).yaml $(3) -p profile $(PROFILE) \
	    -p report_path $(REPORT) -k python3 --cwd . --log-level ERROR --no-progress-bar \
	    2> >(grep --line-buffered -v "Kernel is running over TCP without encryption" >&2) \
	    || { echo "failed after $$((SECONDS - start)) s (the executed cells: $(1:.ipynb=.partial.ipynb))"; exit 1; }; \
	t=$$((SECONDS - start)); printf '%d min %02d s\n' $$((t / 60)) $$((t % 60))
	@$(PY) -c "import sys, liftcam.report as r; r.tidy_executed(sys.argv[1])" $(1:.ipynb=.partial.ipynb)
	@cp $(1:.ipynb=.partial.ipynb) $(SHOWCASE)/$(patsubst $(BUILD)/%,%,$(1))
	@mv $(1:.ipynb=.partial.ipynb) $(1)
endef

# a notebook reruns when it, its profile (and setting) or the library changes; a finished one is not recomputed
$(BUILD)/%.ipynb: notebooks/%.ipynb params/$(PROFILE).yaml $(LIB) | $(STAMP) check-inputs
	$(call papermill,$@,$<,$(OVERRIDES))

$(foreach t,$(SETTINGS),$(eval \
$(BUILD)/$(t)/%.ipynb: notebooks/%.ipynb params/$(PROFILE).yaml params/$(PROFILE)/$(t).yaml $(LIB) | $(STAMP) check-inputs ; \
	$$(call papermill,$$@,$$<,-f params/$(PROFILE)/$(t).yaml $(OVERRIDES),$(t))))

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
