# Stage 2: base detectors trained from scratch.


rule train_base:
    conda:
        "../../envs/edgeprune.yaml"
    input:
        data_ready,
    output:
        model=f"{RESULTS}/models/{{arch}}/base.keras",
        spec=f"{RESULTS}/models/{{arch}}/base.spec.json",
        metrics=f"{RESULTS}/models/{{arch}}/base.train.json",
    params:
        settings=config_params("seed", "data", "detectors.{arch}", "anchors", "train"),
    log:
        f"{RESULTS}/logs/train/{{arch}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{arch}}.tsv"
    threads: THREADS
    script:
        "../scripts/train_base.py"
