from edgeprune.jobs import run_tracked
from edgeprune.stages.backends import backends_table

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake
run_tracked(snakemake, backends_table, map_jsons=list(snakemake.input.maps),
            time_csvs=list(snakemake.input.times), out_csv=snakemake.output.csv)
