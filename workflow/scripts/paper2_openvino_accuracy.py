from edgeprune.jobs import run_tracked
from edgeprune.stages.paper2 import openvino_accuracy

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake
run_tracked(snakemake, openvino_accuracy, eval_jsons=list(snakemake.input.evals),
            out_csv=snakemake.output[0])
