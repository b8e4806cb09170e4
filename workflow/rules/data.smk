# Stage 1: the embedded dataset (VOC layout), generated deterministically from config.


rule generate_data:
    output:
        devkit=directory(f"{RESULTS}/data/VOCdevkit/SYNTH"),
        summary=f"{RESULTS}/data/synthetic.json",
    log:
        f"{RESULTS}/logs/data/generate.log",
    benchmark:
        f"{RESULTS}/benchmarks/data/generate.tsv"
    conda:
        "../../envs/edgeprune.yaml"
    params:
        settings=config_params("seed", "data"),
    script:
        "../scripts/generate_data.py"
