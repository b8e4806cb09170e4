from edgeprune.jobs import run_tracked
from edgeprune.stages.devices import demo_video

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake
run_tracked(snakemake, demo_video, out_path=snakemake.output[0])
