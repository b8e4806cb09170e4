from edgeprune.jobs import run_tracked
from edgeprune.stages.report import base_summary

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake
run_tracked(snakemake, base_summary, train_jsons=list(snakemake.input.train),
            eval_jsons=list(snakemake.input.evals), out_csv=snakemake.output[0])
