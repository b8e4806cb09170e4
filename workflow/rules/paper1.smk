# Paper 1: pruning sweep (tfmot), TFLite float32/float16/int8 (+ sparse), Tables 1-2, Figs 8-9.
# Helpers and settings (P1_*): common.smk.


rule prune:
    input:
        data_ready,
        model=f"{RESULTS}/models/{{arch}}/base.keras",
        spec=f"{RESULTS}/models/{{arch}}/base.spec.json",
    output:
        model=f"{RESULTS}/models/{{arch}}/{{variant}}.keras",
        spec=f"{RESULTS}/models/{{arch}}/{{variant}}.spec.json",
        metrics=f"{RESULTS}/models/{{arch}}/{{variant}}.prune.json",
    log:
        f"{RESULTS}/logs/prune/{{arch}}/{{variant}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/prune/{{arch}}/{{variant}}.tsv"
    wildcard_constraints:
        variant=f"prune[0-9p]+|{P1_CONTROL}",
    conda:
        "../../envs/edgeprune.yaml"
    threads: THREADS
    resources:
        gpu=TRAIN_GPUS,
    params:
        settings=config_params("seed", "train", "paper1.prune"),
    script:
        "../scripts/prune.py"


rule convert_tflite:
    input:
        data_ready,
        model=f"{RESULTS}/models/{{arch}}/{{variant}}.keras",
        spec=f"{RESULTS}/models/{{arch}}/{{variant}}.spec.json",
    output:
        f"{RESULTS}/tflite/{{arch}}/{{variant}}_{{dtype}}.tflite",
    log:
        f"{RESULTS}/logs/convert/{{arch}}/{{variant}}_{{dtype}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/convert/{{arch}}/{{variant}}_{{dtype}}.tsv"
    wildcard_constraints:
        variant="[A-Za-z0-9]+",
        dtype="float32|float16|int8|sparse",
    conda:
        "../../envs/edgeprune.yaml"
    threads: THREADS
    params:
        settings=config_params("paper1.representative_images"),
    script:
        "../scripts/convert_tflite.py"


rule table1:
    input:
        data_ready,
        models=[f"{RESULTS}/models/{P1_ARCH}/{v}.keras" for v in P1_ROWS],
        metrics=[train_metrics_file(v) for v in P1_ROWS],
        evals=[f"{RESULTS}/eval/{P1_ARCH}/{v}/keras.json" for v in P1_ROWS],
        detections=[f"{RESULTS}/eval/{P1_ARCH}/{v}/keras_detections" for v in P1_ROWS],
    output:
        report(
            f"{RESULTS}/table1.csv", category="Paper 1", caption="../report/table1.rst"
        ),
    log:
        f"{RESULTS}/logs/report/table1.log",
    benchmark:
        f"{RESULTS}/benchmarks/report/table1.tsv"
    conda:
        "../../envs/edgeprune.yaml"
    params:
        variants=list(P1_ROWS),
        sparsities=list(P1_ROWS.values()),
        settings=config_params("seed", "data.test_sets", "evaluation"),
    script:
        "../scripts/table1.py"


rule table2:
    input:
        data_ready,
        keras_evals=[f"{RESULTS}/eval/{P1_ARCH}/{v}/keras.json" for v in P1_QUANT],
        models=[f"{RESULTS}/models/{P1_ARCH}/{v}.keras" for v in P1_QUANT],
        tflite=[
            f"{RESULTS}/tflite/{P1_ARCH}/{v}_{d}.tflite"
            for v in P1_QUANT
            for d in P1_DTYPES
        ],
        tflite_evals=[
            f"{RESULTS}/eval/{P1_ARCH}/{v}/tflite-{d}.json"
            for v in P1_QUANT
            for d in P1_DTYPES
        ],
        latency=table2_latency_inputs,
        app=table2_app_inputs,
    output:
        report(
            f"{RESULTS}/table2.csv", category="Paper 1", caption="../report/table2.rst"
        ),
    log:
        f"{RESULTS}/logs/report/table2.log",
    benchmark:
        f"{RESULTS}/benchmarks/report/table2.tsv"
    conda:
        "../../envs/edgeprune.yaml"
    params:
        variants=P1_QUANT,
        dtypes=P1_DTYPES,
        settings=config_params("seed", "data.test_sets", "evaluation"),
    script:
        "../scripts/table2.py"


rule figures_paper1:
    input:
        table1=f"{RESULTS}/table1.csv",
        table2=f"{RESULTS}/table2.csv",
    output:
        fig8_png=report(
            f"{RESULTS}/figures/fig8_sparsity.png",
            category="Paper 1",
            caption="../report/fig8.rst",
        ),
        fig8_pdf=f"{RESULTS}/figures/fig8_sparsity.pdf",
        fig9_png=report(
            f"{RESULTS}/figures/fig9_size_fps.png",
            category="Paper 1",
            caption="../report/fig9.rst",
        ),
        fig9_pdf=f"{RESULTS}/figures/fig9_size_fps.pdf",
    log:
        f"{RESULTS}/logs/report/figures_paper1.log",
    benchmark:
        f"{RESULTS}/benchmarks/report/figures_paper1.tsv"
    conda:
        "../../envs/edgeprune.yaml"
    script:
        "../scripts/figures_paper1.py"
