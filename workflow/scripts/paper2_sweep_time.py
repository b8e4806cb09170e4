from edgeprune.jobs import run_tracked
from edgeprune.stages.paper2 import sweep_time

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake
wc = snakemake.wildcards
run_tracked(snakemake, sweep_time, arch=wc.arch, layer=wc.layer, target=wc.target,
            points_json=snakemake.input.points, model_dir=snakemake.input.models,
            out_csv=snakemake.output.csv, raw_dir=snakemake.output.raw,
            backend=snakemake.params.backend)
