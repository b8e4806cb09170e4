from edgeprune.jobs import run_tracked
from edgeprune.stages.backends import PAIR, backends_time

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake
inp, wc = snakemake.input, snakemake.wildcards
run_tracked(snakemake, backends_time, arch=wc.arch, target=wc.target,
            build_jsons={b: list(inp[f"{b}_builds"]) for b in PAIR},
            model_dirs={b: list(inp[f"{b}_models"]) for b in PAIR},
            out_csv=snakemake.output.csv, raw_dir=snakemake.output.raw)
