# edgeprune entry points. Every target installs what it needs first (into .venv).
VENV ?= .venv
PY := $(VENV)/bin/python
SNAKEMAKE := $(VENV)/bin/snakemake
CORES ?= 8

.PHONY: venv run base test lint report mlflow-ui clean

venv: $(VENV)/.installed

$(VENV)/.installed: envs/requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r envs/requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

run: venv  ## paper 1 Table 2 (the main job)
	$(SNAKEMAKE) --cores $(CORES) results/table2.csv

base: venv  ## base detectors trained and evaluated
	$(SNAKEMAKE) --cores $(CORES) results/base_detectors.csv

test: venv  ## unit + integration tests (CPU only)
	$(PY) -m pytest -q

lint: venv
	$(VENV)/bin/ruff check src tests workflow/scripts benchmarks
	$(SNAKEMAKE) --lint

report: venv  ## HTML report with tables and figures
	$(SNAKEMAKE) --cores $(CORES) --report results/report.html

mlflow-ui: venv
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///results/mlflow.db --port 5000

clean:
	rm -rf results/* .snakemake
	touch results/.gitkeep
