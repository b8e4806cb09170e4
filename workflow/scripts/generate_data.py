from edgeprune.jobs import run_tracked
from edgeprune.stages.data import generate

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake
run_tracked(snakemake, generate, devkit=snakemake.output.devkit.rsplit("/", 1)[0],
            summary=snakemake.output.summary)
