# `make help` lists the targets. Every target installs what it needs first (a venv in .venv/).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PROTOCOL ?= paper
DEPTHS ?= 20,32,44,56
SEEDS ?= 0
OVERRIDES ?=
RESULTS ?= results
# the runs `make plots` draws dotted beneath yours: auto (results/reference/<name>/runs of your protocol), none, or a DIR
REFERENCE ?= auto
# make reference: the sweep.tar.gz that scripts/gpu-session collect wrote, the folder of the resume.tar.part-* files
# written with it (an unfinished sweep's state, kept in results/reference/NAME/resume/), and the reference set
FROM ?=
RESUME ?=
NAME ?= paper-cifar10jpeg
# make gpu-handoff's folder (the next call of a GPU session carries .carry): make reference empties it
HANDOFF ?= .carry/resume
# pytest-xdist workers for make test / test-all: one per core (most tests wait on a subprocess or a signal)
TEST_WORKERS ?= auto

# A variable given on the command line (or in the environment) is text: make expands no `$(...)` in it, and it reaches
# the shell only as single-quoted words (`sh`, `shwords`), so a backtick or `$(...)` in OVERRIDES, DEPTHS or RESULTS is
# passed on as written and never run.
USER_VARS := PROTOCOL DEPTHS SEEDS OVERRIDES RESULTS REFERENCE TEST_WORKERS FORCE ARCH UNITS GPUS CELLS_PER_JOB LAUNCHER \
	FROM RESUME NAME
$(foreach v,$(USER_VARS),$(if $(filter command line environment,$(origin $(v))),$(eval override $(v) := $$(value $(v)))))
# one shell word: '...' with each ' inside closed, escaped and reopened
sh = '$(subst ','\'',$(1))'
# each whitespace-separated word of $(1) as one shell word (OVERRIDES="a=1 b=2" is two overrides, as before)
shwords = $(foreach w,$(1),$(call sh,$(w)))

.PHONY: help install test test-all lint sweep plots bench steptime inspect-bench gpu-bundle gpu-handoff reference published pretrained

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'
	@echo $(call sh,  variables: PROTOCOL=$(PROTOCOL) DEPTHS=$(DEPTHS) SEEDS=$(SEEDS) ARCH=$(ARCH) (minimodel: UNITS=$(UNITS)))
	@echo $(call sh,             RESULTS=$(RESULTS) FORCE=$(FORCE) OVERRIDES='$(OVERRIDES)' REFERENCE=$(REFERENCE))
	@echo $(call sh,             make reference: FROM=$(FROM) RESUME=$(RESUME) NAME=$(NAME))
	@echo $(call sh,             LAUNCHER=$(or $(LAUNCHER),auto) GPUS=$(GPUS) CELLS_PER_JOB=$(CELLS_PER_JOB) (docs/cluster.md))

install: $(VENV)/.installed  ## create .venv/ and install the project (no extras)

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

# the extras, each on top of the project: `cluster` for the SLURM and multi-GPU launchers, `test` (with
# `cluster`, so that CI runs the cluster tests) for the tests and the linter
$(VENV)/.installed-cluster: $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[cluster]'
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[test,cluster]'
	touch $@ $(VENV)/.installed-cluster

test: $(VENV)/.installed-test  ## the test suite (CPU, a few minutes; slow and GPU tests excluded)
	$(PY) -m pytest -q -n $(call sh,$(TEST_WORKERS))

lint: $(VENV)/.installed-test  ## ruff (config in pyproject.toml): what CI checks before the tests
	$(VENV)/bin/ruff check .

test-all: $(VENV)/.installed-test  ## every test, the slow ones too (GPU tests skip without CUDA)
	$(PY) -m pytest -q -n $(call sh,$(TEST_WORKERS)) -m ''

FORCE ?=
ARCH ?= resnet_cifar
UNITS ?= 1,2,3,4
# MiniModel's size is its units per stage; depth is then fixed to one value, which it ignores
SIZES = $(if $(filter minimodel,$(ARCH)),arch=minimodel arch.units_per_stage=$(UNITS) depth=20,depth=$(DEPTHS))
# GPUS=N: this machine's first N GPUs, one group of cells on each (hydra/launcher=gpus); LAUNCHER=slurm: one
# SLURM job per group (docs/cluster.md); CELLS_PER_JOB=K: at most K cells per group (default: a whole stream).
# Otherwise, with a GPU the cells train together in one process (experiments/launchers/concurrent.py); else one after another.
GPUS ?=
CELLS_PER_JOB ?=
LAUNCHER ?=
# The launcher a sweep gets when LAUNCHER is not given. Asking torch for a GPU takes seconds (its import), so only the
# sweep's recipe expands this (a recursive variable, used nowhere at parse time): `make help` never imports torch.
SWEEP_LAUNCHER = $(or $(LAUNCHER),$(if $(GPUS),gpus,$(shell $(PY) -c "import torch; print('concurrent' if torch.cuda.is_available() else 'basic')" 2>/dev/null || echo basic)))
SWEEP_WORDS = protocol=$(PROTOCOL) $(SIZES) residual=false,true seed=$(SEEDS) $(if $(FORCE),force=true) \
	hydra/launcher=$(SWEEP_LAUNCHER) $(if $(GPUS),hydra.launcher.gpus=$(GPUS)) \
	$(if $(CELLS_PER_JOB),hydra.launcher.cells_per_job=$(CELLS_PER_JOB)) $(OVERRIDES)
SWEEP = -m $(call sh,hydra.sweep.dir=$(RESULTS)/$(PROTOCOL)/runs) $(call shwords,$(SWEEP_WORDS))

# exit 2: the sweep did not start (its one-line reason is printed): no figures to redraw, and no second error
sweep: install $(if $(filter slurm gpus,$(LAUNCHER))$(GPUS),$(VENV)/.installed-cluster)  ## plain vs residual x DEPTHS x SEEDS under PROTOCOL, then the figures (reruns resume)
	$(PY) -m experiments.run $(SWEEP); status=$$?; \
	if [ $$status -ne 2 ]; then $(MAKE) --no-print-directory plots PROTOCOL=$(call sh,$(PROTOCOL)) RESULTS=$(call sh,$(RESULTS)); fi; \
	exit $$status

bench: install  ## throughput of (a) conventional, (b) ours, (c) ours x8 concurrently -> results/bench/
	$(PY) -m experiments.bench --out $(call sh,$(RESULTS)/bench) $(call shwords,$(OVERRIDES))

steptime: install  ## where the 8-network sweep's time goes: enqueue vs wall per step, each net alone, epoch ends -> results/bench/
	$(PY) -m experiments.steptime --out $(call sh,$(RESULTS)/bench)

gpu-bundle:  ## .whl/ (Hydra wheels) and .carry/ (the JPEG CIFAR-10 copy) to carry to a GPU machine with no registry
	mkdir -p .whl .carry
	$(PYTHON) -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
	    --platform manylinux2014_x86_64 -d .whl hydra-core==1.3.8 omegaconf==2.3.1
	$(PYTHON) -m pip wheel --quiet --no-deps -w .whl antlr4-python3-runtime==4.9.3
	cp ../shared/datasets/cifar10-jpeg/cifar10-jpeg.tar.gz .carry/

reference: install  ## publish a GPU sweep (FROM=sweep.tar.gz [RESUME=DIR of its resume parts]) as results/reference/NAME/, finished or not
	@$(PY) -m analysis.publish --from $(call sh,$(FROM)) --resume $(call sh,$(RESUME)) --name $(call sh,$(NAME)) \
	    --results $(call sh,$(RESULTS))
	@rm -rf $(call sh,$(HANDOFF))  # published: the committed state is the newest, a carried one would be older

gpu-handoff: install  ## between two calls of one GPU session: FROM=<the first call's files>: its resume parts, checked, into .carry/resume (carry .carry: the next call continues from them even on a fresh machine)
	@$(PY) -m analysis.publish --handoff $(call sh,$(FROM)) --into $(call sh,$(HANDOFF))

plots: install  ## inspect completed runs that lack it, then redraw results/PROTOCOL/ (figures, tables, report; reference dotted)
	$(PY) -m experiments.inspect --missing $(call sh,$(RESULTS)/$(PROTOCOL)/runs)
	$(PY) -m analysis.report --runs $(call sh,$(RESULTS)/$(PROTOCOL)/runs) --out $(call sh,$(RESULTS)/$(PROTOCOL)) \
	    --reference $(call sh,$(REFERENCE))

inspect-bench: install  ## what the after-training inspection adds to a quick run, here (OVERRIDES: other settings)
	$(PY) -m experiments.inspect_bench $(call shwords,$(OVERRIDES))

published: install  ## convert a-martyn/resnet's published curves (FROM=a clone of it) into results/reference/a-martyn-cifar10/, with its figures
	@[ -n $(call sh,$(FROM)) ] || { echo "error: FROM= is empty: give a clone of a-martyn/resnet (runformat/amartyn.py names the commit)" >&2; exit 2; }
	$(PY) -m analysis.published --from $(call sh,$(FROM)) --out $(call sh,$(RESULTS)/reference/a-martyn-cifar10)
	$(PY) -m analysis.report --runs $(call sh,$(RESULTS)/reference/a-martyn-cifar10/runs) \
	    --out $(call sh,$(RESULTS)/reference/a-martyn-cifar10) --reference none

# OVERRIDES: the data to evaluate them on (default: the original CIFAR-10, downloaded as a run would; here the JPEG copy)
pretrained: install  ## import a-martyn/resnet's trained weights (FROM=a clone of it) into results/reference/a-martyn-cifar10/weights/: evaluated, inspected, with its report
	@[ -n $(call sh,$(FROM)) ] || { echo "error: FROM= is empty: give a clone of a-martyn/resnet (runformat/amartyn.py names the commit)" >&2; exit 2; }
	$(PY) -m experiments.pretrained --from $(call sh,$(FROM)) --out $(call sh,$(RESULTS)/reference/a-martyn-cifar10/weights) \
	    $(call shwords,$(OVERRIDES))
	$(PY) -m analysis.report --runs $(call sh,$(RESULTS)/reference/a-martyn-cifar10/weights/runs) \
	    --out $(call sh,$(RESULTS)/reference/a-martyn-cifar10/weights) --reference none
