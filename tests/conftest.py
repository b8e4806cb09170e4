"""Fixtures shared by several test modules."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_workflow import TARGETS, snakemake


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real run of the paper-1 DAG on the tiny config (a few minutes on 2 cores), shared by
    the workflow tests and the SLURM test (its local reference)."""
    workdir = tmp_path_factory.mktemp("workflow")
    snakemake(workdir, *TARGETS)
    return workdir
