from edgeprune.jobs import run_tracked
from edgeprune.stages.paper2 import openvino_ir

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake
wc = snakemake.wildcards
run_tracked(snakemake, openvino_ir, arch=wc.arch, variant=wc.variant, precision=wc.precision,
            model_path=snakemake.input.model, xml_out=snakemake.output.xml,
            threads=snakemake.threads)
