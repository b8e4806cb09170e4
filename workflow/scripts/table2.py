from edgeprune.jobs import run_tracked
from edgeprune.stages.report import table2

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake
inp = snakemake.input
run_tracked(snakemake, table2, variants=snakemake.params.variants, dtypes=snakemake.params.dtypes,
            keras_evals=list(inp.keras_evals), models=list(inp.models), tflite=list(inp.tflite),
            tflite_evals=list(inp.tflite_evals), latency=list(inp.latency),
            app=list(inp.app),
            out_csv=snakemake.output[0])
