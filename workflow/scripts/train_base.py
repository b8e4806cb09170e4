from edgeprune.jobs import run_tracked
from edgeprune.stages.train import train_base

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake
run_tracked(snakemake, train_base, arch=snakemake.wildcards.arch,
            model_out=snakemake.output.model, spec_out=snakemake.output.spec,
            metrics_out=snakemake.output.metrics, threads=snakemake.threads)
