from pathlib import Path

from edgeprune.jobs import run_tracked
from edgeprune.reporting.pareto import pareto_stage

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake
inp, out = snakemake.input, snakemake.output
run_tracked(snakemake, pareto_stage, target=snakemake.wildcards.target,
            table2_csv=inp.get("table2"), p1_arch=snakemake.params.arch,
            whole_csvs=list(inp.get("whole", [])), whole_format=snakemake.params.whole_format,
            out_csv=out.csv, figure=[out.png, out.pdf],
            results=str(Path(out.csv).parent.parent))  # results/pareto/<target>.csv
