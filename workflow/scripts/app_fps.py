from edgeprune.jobs import run_tracked
from edgeprune.stages.devices import app_fps

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake
wc = snakemake.wildcards
run_tracked(snakemake, app_fps, target=wc.target, arch=wc.arch, variant=wc.variant,
            dtype=wc.dtype, model_path=snakemake.input.model, spec_path=snakemake.input.spec,
            video_path=snakemake.input.video, out_json=snakemake.output.json,
            raw_log=snakemake.output.raw, threads=snakemake.params.threads,
            kept_log=snakemake.log.raw)
