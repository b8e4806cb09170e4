from edgeprune.jobs import run_tracked
from edgeprune.stages.paper1 import finetune_sparsity, prune_finetune

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake
out = snakemake.output
run_tracked(snakemake, prune_finetune, sparsity=finetune_sparsity(snakemake.wildcards.variant),
            variant=snakemake.wildcards.variant, base_model=snakemake.input.model,
            base_spec=snakemake.input.spec, model_out=out.model, spec_out=out.spec,
            metrics_out=out.metrics, threads=snakemake.threads)
