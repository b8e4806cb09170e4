from edgeprune.jobs import run_tracked
from edgeprune.stages.report import figures_paper1

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake
out = snakemake.output
run_tracked(snakemake, figures_paper1, table1_csv=snakemake.input.table1,
            table2_csv=snakemake.input.table2, fig8=[out.fig8_png, out.fig8_pdf],
            fig9=[out.fig9_png, out.fig9_pdf])
