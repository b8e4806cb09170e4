# edgeprune: compress SSD detectors for edge devices (pruning, quantization, cluster pruning).
# Main entry points (see README):
#   snakemake --cores 8 results/table2.csv         paper 1, Table 2
#   snakemake --cores 8 results/base_detectors.csv base detectors trained and evaluated
#   snakemake --cores 8 paper2                     paper 2, Tables I-III and figures
#   snakemake --cores 8 pareto                     which variant to deploy, per target
#   snakemake --cores 8                            everything
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/devices.smk"
include: "workflow/rules/paper1.smk"
include: "workflow/rules/paper2.smk"
include: "workflow/rules/pareto.smk"
include: "workflow/rules/cluster.smk"


rule all:
    default_target: True
    input:
        f"{RESULTS}/base_detectors.csv",
        f"{RESULTS}/table1.csv",
        f"{RESULTS}/table2.csv",
        f"{RESULTS}/figures/fig8_sparsity.png",
        rules.paper2.input,
        rules.pareto.input,
