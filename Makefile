# Two commands do all set-up on a fresh machine:
#   make demo   the whole study on the embedded offline data (creates .venv on first use)
#   make test   the test suite (same environment)
# GPU or other torch builds: see README.md, "Installing".

PYTHON ?= python3
VENV ?= .venv
CORES ?= all
CONFIGFILE ?= config/demo.yaml
# torch is installed on its own first, so the build can be chosen: TORCH_SPEC, and TORCH_PIP_ARGS for an
# extra index (e.g. PyTorch's CPU-only or a CUDA wheel index). The lock file pins the same version.
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
PYTEST_ARGS ?= -n 2 --dist loadfile

BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install figures report unlock verdicts-table lint clean-results help

help:
	@echo "make demo     run the offline demo study (config/demo.yaml) -> results/"
	@echo "make test     run the test suite"
	@echo "make figures  re-render the demo figures from cached results"
	@echo "make report   build results/report.html for the demo"
	@echo "make unlock   remove the lock a killed run left (refuses while a run is going here)"
	@echo "make verdicts-table  print results/verdicts.tsv as markdown (README's results section)"
	@echo "make lint     snakemake --lint on the demo and the paper configs"

install: $(STAMP)

$(STAMP): pyproject.toml envs/requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -r envs/requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

# A run killed mid-way is resumed by running the same command again: the workflow profile
# (profiles/default) reruns the jobs it interrupted. Its lock stays behind: the check below says so (and
# names a run that is still going) instead of Snakemake's "Directory cannot be locked"; `make unlock`
# removes it. Nothing here unlocks by itself.
demo: $(STAMP)
	@$(BIN)/python -m davae_study.runlock
	$(BIN)/snakemake all --cores $(CORES) --configfile $(CONFIGFILE)

figures: $(STAMP)
	$(BIN)/snakemake figures --cores $(CORES) --configfile $(CONFIGFILE)

report: $(STAMP)
	$(BIN)/snakemake all --cores $(CORES) --configfile $(CONFIGFILE) --report results/report.html

unlock: $(STAMP)
	@$(BIN)/python -m davae_study.runlock --unlock
	$(BIN)/snakemake --unlock --configfile $(CONFIGFILE)

# the claims' verdicts of the last run as a markdown table (paste into README.md, "Does the paper hold?")
verdicts-table: $(STAMP)
	@$(BIN)/python -m davae_study.verdicts results/verdicts.tsv

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/snakemake --lint --configfile config/demo.yaml
	$(BIN)/snakemake --lint --configfile config/config.yaml

clean-results:
	rm -rf results/*/ results/summary.tsv results/figures logs benchmarks/*/ .snakemake
