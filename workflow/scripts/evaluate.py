from edgeprune.jobs import run_tracked
from edgeprune.stages.evaluate import evaluate_artifact

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake
wc = snakemake.wildcards
run_tracked(snakemake, evaluate_artifact, arch=wc.arch, variant=wc.variant,
            runtime=wc.runtime, model_path=snakemake.input.model,
            spec_path=snakemake.input.spec, out_json=snakemake.output.json,
            det_dir=snakemake.output.detections, threads=snakemake.threads)
