from edgeprune.jobs import run_tracked
from edgeprune.stages.paper2 import whole_time

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake
wc = snakemake.wildcards
run_tracked(snakemake, whole_time, arch=wc.arch, target=wc.target,
            build_jsons=list(snakemake.input.builds), model_dirs=list(snakemake.input.models),
            spec_path=snakemake.input.spec, video=snakemake.input.video,
            out_csv=snakemake.output.csv,
            raw_dir=snakemake.output.raw,
            backend=snakemake.params.backend)
