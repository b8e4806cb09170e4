# Stage 1: the embedded dataset (VOC layout), generated deterministically from config.


rule generate_data:
    conda:
        "../../envs/edgeprune.yaml"
    output:
        devkit=directory(f"{RESULTS}/data/VOCdevkit/SYNTH"),
        summary=f"{RESULTS}/data/synthetic.json",
    params:
        settings=config_params("seed", "data"),
    log:
        f"{RESULTS}/logs/data/generate.log",
    benchmark:
        f"{RESULTS}/benchmarks/data/generate.tsv"
    script:
        "../scripts/generate_data.py"
