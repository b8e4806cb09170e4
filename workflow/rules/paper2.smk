# Paper 2: filter pruning vs hardware-aware cluster pruning.
#   single-layer sweeps -> cluster size per layer/target -> whole-model pruning -> Tables I-III
#   snakemake --cores 2 paper2                      default (cheap) settings
#   snakemake --cores 2 paper2 --configfile config/paper2.yaml   the paper's settings
# Model files are written by *build* jobs (parallel) and timed by *time* jobs that hold the
# resource of the target's physical device (common.smk), so two timings never overlap
# on one device; timing on this machine also takes every core, so nothing runs beside it.
# Helpers and settings (P2_*): common.smk. Every backend in `paper2.backend` runs these rules
# under its own folder (the `p2root` wildcard: paper2 for Keras, paper2/torch for torch); with
# both, p2_backends_* set the same plan side by side.


wildcard_constraints:
    p2root=P2_ROOT_RE,


rule p2_sweep_build:
    input:
        data_ready,
        model=f"{RESULTS}/models/{{arch}}/base.keras",
        spec=f"{RESULTS}/models/{{arch}}/base.spec.json",
    output:
        models=temp(directory(f"{P2_ROOT}/sweeps/{{arch}}/{{layer}}/models")),
        points=f"{P2_ROOT}/sweeps/{{arch}}/{{layer}}/points.json",
    log:
        f"{RESULTS}/logs/{{p2root}}/sweep/{{arch}}/{{layer}}_build.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{p2root}}/sweep/{{arch}}/{{layer}}_build.tsv"
    wildcard_constraints:
        layer=P2_LAYER_RE,
    conda:
        "../../envs/edgeprune.yaml"
    threads: THREADS
    params:
        backend=p2_backend,
        settings=p2_params("accuracy", "eval_images", "targets"),
        sweep=p2_params(
            "sweep.step", "sweep.min_filters", "sweep.max_removed", "sweep.isolated"
        ),
    script:
        "../scripts/paper2_sweep_build.py"


rule p2_sweep_time:
    input:
        points=f"{P2_ROOT}/sweeps/{{arch}}/{{layer}}/points.json",
        models=f"{P2_ROOT}/sweeps/{{arch}}/{{layer}}/models",
    output:
        csv=f"{P2_ROOT}/sweeps/{{arch}}/{{layer}}/{{target}}.csv",
        raw=directory(f"{P2_ROOT}/sweeps/{{arch}}/{{layer}}/raw_{{target}}"),
    log:
        f"{RESULTS}/logs/{{p2root}}/sweep/{{arch}}/{{layer}}_{{target}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{p2root}}/sweep/{{arch}}/{{layer}}_{{target}}.tsv"
    wildcard_constraints:
        layer=P2_LAYER_RE,
        target=P2_TARGET_RE,
    conda:
        "../../envs/edgeprune.yaml"
    threads: timing_threads
    resources:
        **device_resources(),
    params:
        backend=p2_backend,
        timing=p2_params("sweep.timing"),
        target=target_spec,
    script:
        "../scripts/paper2_sweep_time.py"


rule p2_sweep_figures:
    input:
        p2_sweep_csvs,
    output:
        latency=p2_report_figure("fig5_sweep_latency_{arch}", "p2_fig5.rst", "Fig. 5"),
        accuracy=p2_report_figure("fig8_sweep_map_{arch}", "p2_fig8.rst", "Fig. 8"),
    log:
        f"{RESULTS}/logs/{{p2root}}/sweep/{{arch}}_figures.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{p2root}}/sweep/{{arch}}_figures.tsv"
    conda:
        "../../envs/edgeprune.yaml"
    threads: 1
    script:
        "../scripts/paper2_sweep_figures.py"


rule p2_cluster_size:
    input:
        p2_sweep_csvs,
    output:
        json=f"{P2_ROOT}/cluster_size/{{arch}}.json",
        figures=p2_report_figure(
            "period_evidence_{arch}", "p2_period_evidence.rst", "period evidence"
        ),
    log:
        f"{RESULTS}/logs/{{p2root}}/cluster_size/{{arch}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{p2root}}/cluster_size/{{arch}}.tsv"
    conda:
        "../../envs/edgeprune.yaml"
    threads: 1
    params:
        backend=p2_backend,
        settings=p2_params("period", "cluster", "whole"),
    script:
        "../scripts/paper2_cluster_size.py"


rule p2_whole_build:
    input:
        data_ready,
        model=f"{RESULTS}/models/{{arch}}/base.keras",
        spec=f"{RESULTS}/models/{{arch}}/base.spec.json",
        sizes=f"{P2_ROOT}/cluster_size/{{arch}}.json",
    output:
        models=temp(directory(f"{P2_ROOT}/whole/{{arch}}/models_{{method}}")),
        json=f"{P2_ROOT}/whole/{{arch}}/{{method}}.json",
    log:
        f"{RESULTS}/logs/{{p2root}}/whole/{{arch}}/{{method}}_build.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{p2root}}/whole/{{arch}}/{{method}}_build.tsv"
    wildcard_constraints:
        method="filter|cluster",
    conda:
        "../../envs/edgeprune.yaml"
    threads: THREADS
    resources:
        gpu=TRAIN_GPUS,
    params:
        backend=p2_backend,
        settings=p2_params("whole", "accuracy", "eval_images", "targets"),
    script:
        "../scripts/paper2_whole_build.py"


rule p2_whole_time:
    input:
        builds=expand(
            f"{P2_ROOT}/whole/{{{{arch}}}}/{{method}}.json",
            method=P2_METHODS,
            allow_missing=True,
        ),
        models=expand(
            f"{P2_ROOT}/whole/{{{{arch}}}}/models_{{method}}",
            method=P2_METHODS,
            allow_missing=True,
        ),
        spec=f"{RESULTS}/models/{{arch}}/base.spec.json",
        video=APP_VIDEO,
    output:
        csv=f"{P2_ROOT}/whole/{{arch}}/{{target}}.csv",
        raw=directory(f"{P2_ROOT}/whole/{{arch}}/raw_{{target}}"),
    log:
        f"{RESULTS}/logs/{{p2root}}/whole/{{arch}}/{{target}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{p2root}}/whole/{{arch}}/{{target}}.tsv"
    wildcard_constraints:
        target=P2_TARGET_RE,
    conda:
        "../../envs/edgeprune.yaml"
    threads: timing_threads
    resources:
        **device_resources(),
    params:
        backend=p2_backend,
        timing=p2_params("whole.timing"),
        app=p2_params("app_fps", "tables"),
        target=target_spec,
    script:
        "../scripts/paper2_whole_time.py"


rule p2_report:
    input:
        sizes=expand(
            f"{P2_ROOT}/cluster_size/{{arch}}.json", arch=P2.archs, allow_missing=True
        ),
        builds=expand(
            f"{P2_ROOT}/whole/{{arch}}/{{method}}.json",
            arch=P2.archs,
            method=P2_METHODS,
            allow_missing=True,
        ),
        whole=expand(
            f"{P2_ROOT}/whole/{{arch}}/{{target}}.csv",
            arch=P2.archs,
            target=P2_TARGETS,
            allow_missing=True,
        ),
    output:
        table1=p2_table(f"{P2_ROOT}/table1.csv", "p2_table1.rst"),
        table2=p2_table(f"{P2_ROOT}/table2.csv", "p2_table2.rst"),
        table3=p2_table(f"{P2_ROOT}/table3.csv", "p2_table3.rst"),
        periods=p2_table(f"{P2_ROOT}/periods.csv", "p2_periods.rst"),
        summary=p2_table(f"{P2_ROOT}/summary.md", "p2_summary.rst"),
        figures=[
            f
            for arch, (fig10, fig12) in report_figures(P2.archs).items()
            for f in p2_report_figure(fig10, "p2_fig10.rst", "Fig. 10", arch)
            + p2_report_figure(fig12, "p2_fig12.rst", "Fig. 12", arch)
        ],
    log:
        f"{RESULTS}/logs/{{p2root}}/report.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{p2root}}/report.tsv"
    conda:
        "../../envs/edgeprune.yaml"
    threads: 1
    params:
        backend=p2_backend,
        settings=p2_params("tables", "targets"),
    script:
        "../scripts/paper2_report.py"


rule openvino_ir:
    input:
        model=f"{RESULTS}/models/{{arch}}/{{variant}}.keras",
    output:
        xml=f"{RESULTS}/openvino/{{arch}}/{{variant}}_{{precision}}.xml",
        bin=f"{RESULTS}/openvino/{{arch}}/{{variant}}_{{precision}}.bin",
    log:
        f"{RESULTS}/logs/openvino/{{arch}}/{{variant}}_{{precision}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/openvino/{{arch}}/{{variant}}_{{precision}}.tsv"
    wildcard_constraints:
        variant="[A-Za-z0-9]+",
        precision="fp32|fp16",
    conda:
        "../../envs/edgeprune.yaml"
    threads: THREADS
    script:
        "../scripts/paper2_openvino_ir.py"


rule p2_openvino_accuracy:
    input:
        data_ready,
        evals=expand(
            f"{RESULTS}/eval/{{arch}}/base/{{runtime}}.json",
            arch=P2.archs,
            runtime=["keras", "openvino-fp32", "openvino-fp16"],
        ),
    output:
        p2_table(f"{RESULTS}/paper2/openvino_accuracy.csv", "p2_openvino_accuracy.rst"),
    log:
        f"{RESULTS}/logs/paper2/openvino_accuracy.log",
    benchmark:
        f"{RESULTS}/benchmarks/paper2/openvino_accuracy.tsv"
    conda:
        "../../envs/edgeprune.yaml"
    threads: 1
    params:
        settings=config_params("seed", "data.test_sets", "evaluation"),
    script:
        "../scripts/paper2_openvino_accuracy.py"


rule p2_backends_map:
    input:
        unpack(p2_pair_inputs),
        data_ready,
        spec=f"{RESULTS}/models/{{arch}}/base.spec.json",
    output:
        json=f"{P2_BACKENDS_DIR}/{{arch}}/map.json",
    log:
        f"{RESULTS}/logs/paper2/backends/{{arch}}_map.log",
    benchmark:
        f"{RESULTS}/benchmarks/paper2/backends/{{arch}}_map.tsv"
    conda:
        "../../envs/edgeprune.yaml"
    threads: THREADS
    params:
        settings=p2_params("eval_images", "backend"),
    script:
        "../scripts/paper2_backends_map.py"


rule p2_backends_time:
    input:
        unpack(p2_pair_inputs),
    output:
        csv=f"{P2_BACKENDS_DIR}/{{arch}}/{{target}}.csv",
        raw=directory(f"{P2_BACKENDS_DIR}/{{arch}}/raw_{{target}}"),
    log:
        f"{RESULTS}/logs/paper2/backends/{{arch}}_{{target}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/paper2/backends/{{arch}}_{{target}}.tsv"
    wildcard_constraints:
        target=P2_TARGET_RE,
    conda:
        "../../envs/edgeprune.yaml"
    threads: timing_threads
    resources:
        **device_resources(),
    params:
        timing=p2_params("whole.timing"),
        target=target_spec,
    script:
        "../scripts/paper2_backends_time.py"


rule p2_backends:
    input:
        maps=expand(f"{P2_BACKENDS_DIR}/{{arch}}/map.json", arch=P2.archs),
        times=expand(
            f"{P2_BACKENDS_DIR}/{{arch}}/{{target}}.csv",
            arch=P2.archs,
            target=P2_TARGETS,
        ),
    output:
        csv=p2_table(f"{RESULTS}/paper2/backends.csv", "p2_backends.rst"),
    log:
        f"{RESULTS}/logs/paper2/backends.log",
    benchmark:
        f"{RESULTS}/benchmarks/paper2/backends.tsv"
    conda:
        "../../envs/edgeprune.yaml"
    threads: 1
    script:
        "../scripts/paper2_backends.py"


rule paper2:
    input:
        p2_all(f"{P2_ROOT}/{{name}}", name=P2_REPORT_FILES),
        p2_all(f"{P2_FIGS}/{{name}}.{{ext}}", name=P2_FIGURES, ext=["png", "pdf"]),
        f"{RESULTS}/paper2/openvino_accuracy.csv",
        [f"{RESULTS}/paper2/backends.csv"] if len(P2.backends) > 1 else [],
    conda:
        "../../envs/edgeprune.yaml"
