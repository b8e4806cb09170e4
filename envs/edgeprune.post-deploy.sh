#!/usr/bin/env sh
# Run by Snakemake inside the new conda environment (envs/edgeprune.yaml): install the edgeprune
# package itself, without dependencies (the environment holds the locked ones).
set -eu
: "${EDGEPRUNE_ROOT:?EDGEPRUNE_ROOT is not set: run the workflow through its Snakefile}"
python -m pip install --no-deps "$EDGEPRUNE_ROOT"
