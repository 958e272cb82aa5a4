# Two commands do all set-up on a fresh machine:
#   make demo   the whole study on the embedded offline data (creates .venv on first use)
#   make test   the test suite (same environment)
# GPU or other torch builds: see README.md, "Installing".

PYTHON ?= python3
VENV ?= .venv
CORES ?= all
# torch is installed on its own first, so the build can be chosen: TORCH_SPEC, and TORCH_PIP_ARGS for an
# extra index (e.g. PyTorch's CPU-only or a CUDA wheel index). The lock file pins the same version.
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
PYTEST_ARGS ?= -n 2 --dist loadfile

BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install figures report lint clean-results help

help:
	@echo "make demo     run the offline demo study (config/demo.yaml) -> results/"
	@echo "make test     run the test suite"
	@echo "make figures  re-render the demo figures from cached results"
	@echo "make report   build results/report.html for the demo"
	@echo "make lint     snakemake --lint on the demo and the paper configs"

install: $(STAMP)

$(STAMP): pyproject.toml envs/requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -r envs/requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

demo: $(STAMP)
	$(BIN)/snakemake all --cores $(CORES) --configfile config/demo.yaml

figures: $(STAMP)
	$(BIN)/snakemake figures --cores $(CORES) --configfile config/demo.yaml

report: $(STAMP)
	$(BIN)/snakemake all --cores $(CORES) --configfile config/demo.yaml --report results/report.html

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/snakemake --lint --configfile config/demo.yaml
	$(BIN)/snakemake --lint --configfile config/config.yaml

clean-results:
	rm -rf results/*/ results/summary.tsv results/figures logs benchmarks/*/ .snakemake
