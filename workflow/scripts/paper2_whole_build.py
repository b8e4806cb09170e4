from edgeprune.jobs import run_tracked
from edgeprune.stages.paper2 import whole_build

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake
wc = snakemake.wildcards
run_tracked(snakemake, whole_build, arch=wc.arch, method=wc.method,
            model_path=snakemake.input.model, spec_path=snakemake.input.spec,
            sizes_json=snakemake.input.sizes, out_dir=snakemake.output.models,
            out_json=snakemake.output.json, threads=snakemake.threads,
            backend=snakemake.params.backend)
