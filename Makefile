# edgeprune entry points. Every target installs what it needs first (into .venv).
VENV ?= .venv
PY := $(VENV)/bin/python
SNAKEMAKE := $(VENV)/bin/snakemake
CORES ?= 8
LOCK := envs/requirements.lock
# pip-compile (pip-tools) writes the lock; it runs pip itself, so it sees pip's configuration
# (find-links, extra index) and hashes the very files pip installs, local wheels included.
PIP_TOOLS := pip-tools==7.6.2
LOCK_TOOLS := $(VENV)/lock-tools

.PHONY: venv lock run base test lint report mlflow-ui clean

venv: $(VENV)/.installed

# Exact versions with hashes (pip's hash-checking mode), then the package without dependencies.
$(VENV)/.installed: $(LOCK) pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --require-hashes -r $(LOCK)
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

lock:  ## re-resolve envs/requirements.txt into envs/requirements.lock (versions + hashes)
	python3 -m venv $(LOCK_TOOLS)
	$(LOCK_TOOLS)/bin/pip install -q --disable-pip-version-check $(PIP_TOOLS)
	$(LOCK_TOOLS)/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
		--no-emit-index-url --no-emit-find-links --output-file $(LOCK) \
		envs/requirements.txt
	sed -i "s/^# lock sha256: .*/# lock sha256: $$(sha256sum $(LOCK) | cut -c1-64)/" \
		envs/edgeprune.yaml

run: venv  ## paper 1 Table 2 (the main job)
	$(SNAKEMAKE) --cores $(CORES) results/table2.csv

base: venv  ## base detectors trained and evaluated
	$(SNAKEMAKE) --cores $(CORES) results/base_detectors.csv

test: venv  ## unit + integration tests (CPU only)
	$(PY) -m pytest -q --durations=30

lint: venv
	$(VENV)/bin/ruff check src tests workflow/scripts benchmarks
	$(VENV)/bin/snakefmt --check Snakefile workflow/rules
	$(SNAKEMAKE) --lint

report: venv  ## HTML report with tables and figures
	$(SNAKEMAKE) --cores $(CORES) --report results/report.html

mlflow-ui: venv
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///results/mlflow.db --port 5000

clean:
	rm -rf results/* .snakemake
	touch results/.gitkeep
