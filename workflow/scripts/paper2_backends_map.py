from edgeprune.jobs import run_tracked
from edgeprune.stages.backends import PAIR, backends_map

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake
inp = snakemake.input
run_tracked(snakemake, backends_map, arch=snakemake.wildcards.arch,
            build_jsons={b: list(inp[f"{b}_builds"]) for b in PAIR},
            model_dirs={b: list(inp[f"{b}_models"]) for b in PAIR},
            spec_path=inp.spec, out_json=snakemake.output.json, threads=snakemake.threads)
