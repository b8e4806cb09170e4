# Stage 2: base detectors trained from scratch.

# `train.device: gpu` asks a cluster executor for one GPU per training / fine-tuning job
# (profiles/slurm turns `gpu` into `sbatch --gpus=1`); auto and cpu ask for none.
TRAIN_GPUS = 1 if config["train"]["device"] == "gpu" else 0


rule train_base:
    input:
        data_ready,
    output:
        model=f"{RESULTS}/models/{{arch}}/base.keras",
        spec=f"{RESULTS}/models/{{arch}}/base.spec.json",
        metrics=f"{RESULTS}/models/{{arch}}/base.train.json",
    log:
        f"{RESULTS}/logs/train/{{arch}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{arch}}.tsv"
    conda:
        "../../envs/edgeprune.yaml"
    threads: THREADS
    resources:
        gpu=TRAIN_GPUS,
    params:
        settings=config_params("seed", "data", "detectors.{arch}", "anchors", "train"),
    script:
        "../scripts/train_base.py"
