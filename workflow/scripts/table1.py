from edgeprune.jobs import run_tracked
from edgeprune.stages.report import table1

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake
inp = snakemake.input
run_tracked(snakemake, table1, variants=snakemake.params.variants,
            sparsities=snakemake.params.sparsities, models=list(inp.models),
            metrics=list(inp.metrics), evals=list(inp.evals), detections=list(inp.detections),
            out_csv=snakemake.output[0])
