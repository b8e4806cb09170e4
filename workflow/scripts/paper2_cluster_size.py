from edgeprune.jobs import run_tracked
from edgeprune.stages.paper2 import cluster_sizes

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake
run_tracked(snakemake, cluster_sizes, arch=snakemake.wildcards.arch, csvs=list(snakemake.input),
            out_json=snakemake.output.json, figures=list(snakemake.output.figures),
            backend=snakemake.params.backend)
