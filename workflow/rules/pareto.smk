# Deployment chooser (beyond both papers): every variant timed on a target -- paper 1's TFLite
# files (Table 2) and paper 2's whole-model pruning steps -- mAP against latency and size, with
# the Pareto front marked. `python -m edgeprune.choose --target T --max-ms X` reads the table.
#   snakemake --cores 8 pareto                        every enabled target
#   snakemake --cores 8 results/pareto/host-litert.csv
# Helpers (PARETO_TARGETS, pareto_inputs, pareto_format): common.smk.


rule pareto_target:
    input:
        unpack(pareto_inputs),
    output:
        csv=report(
            f"{RESULTS}/pareto/{{target}}.csv",
            caption="../report/pareto_table.rst",
            category="Deployment",
            labels={"target": "{target}", "content": "table"},
        ),
        png=report(
            f"{RESULTS}/pareto/{{target}}.png",
            caption="../report/pareto_figure.rst",
            category="Deployment",
            labels={"target": "{target}", "content": "figure"},
        ),
        pdf=f"{RESULTS}/pareto/{{target}}.pdf",
    log:
        f"{RESULTS}/logs/pareto/{{target}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/pareto/{{target}}.tsv"
    wildcard_constraints:
        target="|".join(re.escape(t) for t in PARETO_TARGETS) or "$^",
    conda:
        "../../envs/edgeprune.yaml"
    threads: 1
    params:
        arch=P1_ARCH,
        whole_format=pareto_format,
    script:
        "../scripts/pareto.py"


rule pareto:
    input:
        expand(f"{RESULTS}/pareto/{{target}}.csv", target=PARETO_TARGETS),
