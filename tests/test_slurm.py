"""The SLURM profile against a real SLURM: a single-node cluster on 127.0.0.1 (Debian's
``slurm-wlm`` and ``munge``, started by ``tests/slurm/start.sh``; ``.ci/run`` installs them) runs
the tiny config's ``results/table1.csv`` (data, base training, pruning, evaluation on SLURM; the
table itself a local rule) with ``--profile profiles/slurm``.

Evidence comes from SLURM's own records, not from Snakemake's: slurmctld keeps finished jobs for
``MinJobAge`` (a day here), so ``squeue --states=all`` lists every job with its state and the
comment the executor plugin gives it (``rule_<rule>_wildcards_<...>``), and the job completion
log (``JobCompType=jobcomp/filetxt``) has one line per finished job. No accounting database:
the plugin reads job states from ``squeue`` (``--slurm-status-command squeue``; README
"Running on a cluster"). If SLURM cannot start, the test fails — it never skips."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from test_workflow import ROOT, planned_jobs, snakemake

START = ROOT / "tests" / "slurm" / "start.sh"
STOP = ROOT / "tests" / "slurm" / "stop.sh"
PROFILE = ROOT / "profiles" / "slurm"
TARGET = "results/table1.csv"
#: The target's rule: a `localrules` entry (profiles/slurm: written on the submitting host).
LOCAL_RULE = "table1"
#: What the profile's cluster runs needs here: job states from squeue (no slurmdbd), no
#: account, and status checks every few seconds instead of the plugin's 40 s start.
SLURM_ARGS = ("--profile", str(PROFILE), "--slurm-status-command", "squeue",
              "--slurm-no-account", "--slurm-init-seconds-before-status-checks", "2")


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A running single-node SLURM; its state, logs and slurm.conf in the yielded folder."""
    state = tmp_path_factory.mktemp("slurm")
    proc = subprocess.run(["bash", str(START), str(state)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, f"single-node SLURM did not start:\n{proc.stderr[-3000:]}"
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(state / "slurm.conf")
    try:
        yield state
    finally:
        subprocess.run(["bash", str(STOP), str(state)], timeout=60, check=False)
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous


def slurm_records(run_id: str) -> list[dict[str, str]]:
    """Every job slurmctld knows under the executor's job name ``run_id``: id, state, rule."""
    out = subprocess.run(["squeue", "--states=all", "--noheader", "--name", run_id,
                          "--format=%i|%T|%k|%N"], capture_output=True, text=True, check=True,
                         timeout=60).stdout
    records = []
    for line in out.splitlines():
        job_id, state, comment, node = line.split("|")
        rule = re.sub(r"_wildcards_.*$", "", comment.removeprefix("rule_"))
        records.append({"id": job_id, "state": state, "rule": rule, "node": node})
    return records


def completion_log(state: Path, run_id: str) -> dict[str, str]:
    """Job id -> final state of ``run_id``'s jobs in the job completion log."""
    fields = (dict(item.split("=", 1) for item in line.split() if "=" in item)
              for line in (state / "log" / "jobcomp.log").read_text().splitlines())
    return {f["JobId"]: f["JobState"] for f in fields if f.get("Name") == run_id}


@pytest.mark.integration
def test_table1_on_a_real_slurm(slurm: Path, tmp_path_factory: pytest.TempPathFactory,
                                tiny_run: Path) -> None:
    work = tmp_path_factory.mktemp("on_slurm")
    plan = planned_jobs(snakemake(work, TARGET, "-n", *SLURM_ARGS))
    t0 = time.perf_counter()
    # Every SLURM job starts Snakemake twice more (sbatch wrapper, job step): a longer limit.
    proc = snakemake(work, TARGET, *SLURM_ARGS, timeout=2700)
    seconds = time.perf_counter() - t0
    log = proc.stdout + proc.stderr
    run_id = re.search(r"SLURM run ID: (\S+)", log).group(1)

    records = slurm_records(run_id)
    by_rule = Counter(r["rule"] for r in records)
    # Every job but the table ran as a SLURM job, each once, and finished COMPLETED.
    assert dict(by_rule) == {r: n for r, n in plan.items() if r != LOCAL_RULE}, (by_rule, plan)
    assert LOCAL_RULE not in by_rule  # localrules: the table is written on the submitting host
    assert {"train_base", "prune", "evaluate"} <= set(by_rule)
    assert {r["state"] for r in records} == {"COMPLETED"}
    assert {r["node"] for r in records} == {subprocess.check_output(
        ["hostname", "-s"], text=True).strip()}
    # The completion log agrees, job by job; Snakemake saw the same job ids.
    assert completion_log(slurm, run_id) == {r["id"]: "COMPLETED" for r in records}
    submitted = set(re.findall(r"submitted with SLURM jobid (\d+)", log))
    assert submitted == {r["id"] for r in records}
    # SLURM logs of the jobs: each one ran the rule through the slurm-jobstep executor.
    print(f"SLURM run of {TARGET}: {len(records)} SLURM jobs, {seconds:.0f} s")

    # Tables equal the local run's (the workflow tests' run of the same config) in shape: same
    # rows, same columns.
    on_slurm = pd.read_csv(work / TARGET)
    reference = pd.read_csv(tiny_run / TARGET)
    assert on_slurm.shape == reference.shape
    assert on_slurm["model"].tolist() == reference["model"].tolist()
    assert on_slurm.columns.tolist() == reference.columns.tolist()
