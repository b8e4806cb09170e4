from pathlib import Path

from edgeprune.jobs import run_tracked
from edgeprune.stages.paper2 import report

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake
out = snakemake.output
run_tracked(snakemake, report, sizes_jsons=list(snakemake.input.sizes),
            build_jsons=list(snakemake.input.builds), whole_csvs=list(snakemake.input.whole),
            table1_csv=out.table1, table2_csv=out.table2, table3_csv=out.table3,
            periods_csv=out.periods, summary_md=out.summary,
            figure_dir=Path(out.figures[0]).parent,
            backend=snakemake.params.backend)
