from edgeprune.jobs import run_tracked
from edgeprune.stages.paper1 import convert_tflite

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake
run_tracked(snakemake, convert_tflite, variant=snakemake.wildcards.variant,
            dtype=snakemake.wildcards.dtype, model_path=snakemake.input.model,
            spec_path=snakemake.input.spec, out_path=snakemake.output[0],
            threads=snakemake.threads)
