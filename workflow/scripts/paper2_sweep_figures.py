from edgeprune.jobs import run_tracked
from edgeprune.stages.paper2 import sweep_figures

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake
run_tracked(snakemake, sweep_figures, arch=snakemake.wildcards.arch,
            csvs=list(snakemake.input), latency_figs=list(snakemake.output.latency),
            accuracy_figs=list(snakemake.output.accuracy))
