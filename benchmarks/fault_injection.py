"""Fault injection, the long version of ``tests/test_faults_jobs.py`` (issue 9 point 8 a):
SIGKILL the whole ``snakemake`` process group at random moments of the tiny train -> prune ->
convert chain, ``--kills`` times, and rerun to completion after each kill::

    .venv/bin/python benchmarks/fault_injection.py --kills 10 --seed 1 --json /tmp/faults.json

The first cycle runs the chain from scratch (unless ``--workdir`` already holds a finished run);
later cycles force rule ``--force`` (and what depends on it) so that there is work to kill.

After every rerun it checks what the test checks (every JSON parses, no temp file left, no
MLflow run RUNNING, no job with two FINISHED runs) and prints one line per kill: when it struck,
the rerun's exit status and time, and the store's run counts by status. Not a test: it takes
tens of minutes on a 2-core machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_faults_jobs import check_consistent, kill_and_rerun  # noqa: E402

from edgeprune.fileio import write_json  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--window", type=float, nargs=2, default=(5.0, 60.0),
                    help="a kill strikes a uniform random number of seconds into a run")
    ap.add_argument("--force", default="convert_tflite",
                    help="rule rerun (with what follows it) in every cycle after the first")
    ap.add_argument("--workdir", type=Path, default=None,
                    help="work in this folder (default: a new temporary one)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="faults-"))
    workdir.mkdir(parents=True, exist_ok=True)
    fresh = not (workdir / "results" / "mlflow.db").exists()
    rows = []
    t_all = time.monotonic()
    for i in range(args.kills):
        (cycle,) = kill_and_rerun(workdir, kills=1, seed=args.seed + i,
                                  window=tuple(args.window), force=args.force,
                                  first=fresh and i == 0)
        counts = check_consistent(workdir) if cycle["rerun_rc"] == 0 else {}
        cycle.update(kill=i + 1, **{f"store_{k}": v for k, v in counts.items()})
        tail = cycle.pop("rerun_tail")
        rows.append(cycle)
        print(f"kill {i + 1}: at {cycle['kill_at_s']:5.1f} s "
              f"({'after the run ended' if cycle['run_had_finished'] else 'mid-run'}), "
              f"rerun rc {cycle['rerun_rc']} in {cycle['rerun_s']:.1f} s; store: "
              + ", ".join(f"{k} {v}" for k, v in counts.items()), flush=True)
        if cycle["rerun_rc"] != 0:
            print(tail, file=sys.stderr)
            break
    ok = all(r["rerun_rc"] == 0 for r in rows) and len(rows) == args.kills
    summary = {"kills": len(rows), "all_reruns_completed": ok,
               "total_s": round(time.monotonic() - t_all, 1), "workdir": str(workdir),
               "cycles": rows}
    print(f"{len(rows)} kills, all reruns completed and consistent: {ok}, "
          f"{summary['total_s']:.0f} s in all")
    if args.json:
        write_json(args.json, summary)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
