# Paper 1: pruning sweep (tfmot), TFLite float32/float16/int8 (+ sparse), Tables 1-2, Figs 8-9.
from edgeprune.prune import variant_name

P1 = config["paper1"]
P1_ARCH = P1["arch"]
P1_LEVELS = {variant_name(s): s for s in P1["sparsities"]}
P1_QUANT = [variant_name(s) for s in P1["quantize"]]
P1_DTYPES = list(P1["dtypes"]) + (["sparse"] if P1["sparse_tflite"] else [])


def train_metrics_file(variant):
    """Training (base) or pruning (fine-tune) metrics JSON of a variant."""
    kind = "train" if variant == "base" else "prune"
    return f"{RESULTS}/models/{P1_ARCH}/{variant}.{kind}.json"


def table2_latency_inputs(wildcards=None):
    """Latency JSONs of every converted model on every enabled TFLite-capable target."""
    return [
        latency_file(t, P1_ARCH, v, d)
        for t in tflite_targets()
        for v in P1_QUANT
        for d in P1_DTYPES
    ]


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
        variant="prune[0-9p]+",
    threads: THREADS
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
    threads: THREADS
    script:
        "../scripts/convert_tflite.py"


rule table1:
    input:
        models=[f"{RESULTS}/models/{P1_ARCH}/{v}.keras" for v in P1_LEVELS],
        metrics=[train_metrics_file(v) for v in P1_LEVELS],
        evals=[f"{RESULTS}/eval/{P1_ARCH}/{v}/keras.json" for v in P1_LEVELS],
    output:
        report(f"{RESULTS}/table1.csv", category="Paper 1", caption="../report/table1.rst"),
    log:
        f"{RESULTS}/logs/report/table1.log",
    benchmark:
        f"{RESULTS}/benchmarks/report/table1.tsv"
    params:
        sparsities=list(P1_LEVELS.values()),
    script:
        "../scripts/table1.py"


rule table2:
    input:
        keras_evals=[f"{RESULTS}/eval/{P1_ARCH}/{v}/keras.json" for v in P1_QUANT],
        models=[f"{RESULTS}/models/{P1_ARCH}/{v}.keras" for v in P1_QUANT],
        tflite=[f"{RESULTS}/tflite/{P1_ARCH}/{v}_{d}.tflite" for v in P1_QUANT for d in P1_DTYPES],
        tflite_evals=[
            f"{RESULTS}/eval/{P1_ARCH}/{v}/tflite-{d}.json" for v in P1_QUANT for d in P1_DTYPES
        ],
        latency=table2_latency_inputs,
    output:
        report(f"{RESULTS}/table2.csv", category="Paper 1", caption="../report/table2.rst"),
    log:
        f"{RESULTS}/logs/report/table2.log",
    benchmark:
        f"{RESULTS}/benchmarks/report/table2.tsv"
    params:
        variants=P1_QUANT,
        dtypes=P1_DTYPES,
    script:
        "../scripts/table2.py"


rule figures_paper1:
    input:
        table1=f"{RESULTS}/table1.csv",
        table2=f"{RESULTS}/table2.csv",
    output:
        fig8_png=report(f"{RESULTS}/figures/fig8_sparsity.png", category="Paper 1"),
        fig8_pdf=f"{RESULTS}/figures/fig8_sparsity.pdf",
        fig9_png=report(f"{RESULTS}/figures/fig9_size_fps.png", category="Paper 1"),
        fig9_pdf=f"{RESULTS}/figures/fig9_size_fps.pdf",
    log:
        f"{RESULTS}/logs/report/figures_paper1.log",
    benchmark:
        f"{RESULTS}/benchmarks/report/figures_paper1.tsv"
    script:
        "../scripts/figures_paper1.py"
