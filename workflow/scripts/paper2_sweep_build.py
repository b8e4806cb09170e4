from edgeprune.jobs import run_tracked
from edgeprune.stages.paper2 import sweep_build

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake
wc = snakemake.wildcards
run_tracked(snakemake, sweep_build, arch=wc.arch, layer=wc.layer,
            model_path=snakemake.input.model, spec_path=snakemake.input.spec,
            out_dir=snakemake.output.models, points_json=snakemake.output.points,
            threads=snakemake.threads,
            backend=snakemake.params.backend)
