# Paper 2: filter pruning vs hardware-aware cluster pruning.
#   single-layer sweeps -> cluster size per layer/target -> whole-model pruning -> Tables I-III
#   snakemake --cores 2 paper2                      default (cheap) settings
#   snakemake --cores 2 paper2 --configfile config/paper2.yaml   the paper's settings
# Model files are written by *build* jobs (parallel) and timed by *time* jobs that hold the
# resource of the target's physical device (common.smk), so two timings never overlap
# on one device; timing on this machine also takes every core, so nothing runs beside it.
# Helpers and settings (P2_*): common.smk.


rule p2_sweep_build:
    conda:
        "../../envs/edgeprune.yaml"
    input:
        data_ready,
        model=f"{RESULTS}/models/{{arch}}/base.keras",
        spec=f"{RESULTS}/models/{{arch}}/base.spec.json",
    output:
        models=temp(directory(f"{P2_ROOT}/sweeps/{{arch}}/{{layer}}/models")),
        points=f"{P2_ROOT}/sweeps/{{arch}}/{{layer}}/points.json",
    params:
        settings=p2_params("accuracy", "eval_images", "targets"),
        sweep=p2_params("sweep.step", "sweep.min_filters", "sweep.max_removed",
                        "sweep.isolated"),
    log:
        f"{RESULTS}/logs/paper2/sweep/{{arch}}/{{layer}}_build.log",
    benchmark:
        f"{RESULTS}/benchmarks/paper2/sweep/{{arch}}/{{layer}}_build.tsv"
    wildcard_constraints:
        layer=P2_LAYER_RE,
    threads: THREADS
    script:
        "../scripts/paper2_sweep_build.py"


rule p2_sweep_time:
    conda:
        "../../envs/edgeprune.yaml"
    input:
        points=f"{P2_ROOT}/sweeps/{{arch}}/{{layer}}/points.json",
        models=f"{P2_ROOT}/sweeps/{{arch}}/{{layer}}/models",
    output:
        csv=f"{P2_ROOT}/sweeps/{{arch}}/{{layer}}/{{target}}.csv",
        raw=directory(f"{P2_ROOT}/sweeps/{{arch}}/{{layer}}/raw_{{target}}"),
    params:
        timing=p2_params("sweep.timing"),
        target=target_spec,
    log:
        f"{RESULTS}/logs/paper2/sweep/{{arch}}/{{layer}}_{{target}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/paper2/sweep/{{arch}}/{{layer}}_{{target}}.tsv"
    wildcard_constraints:
        layer=P2_LAYER_RE,
        target=P2_TARGET_RE,
    threads: timing_threads
    resources:
        **device_resources(),
    script:
        "../scripts/paper2_sweep_time.py"


rule p2_sweep_figures:
    conda:
        "../../envs/edgeprune.yaml"
    input:
        p2_sweep_csvs,
    output:
        latency=p2_figure_files("fig5_sweep_latency_{arch}"),
        accuracy=p2_figure_files("fig8_sweep_map_{arch}"),
    log:
        f"{RESULTS}/logs/paper2/sweep/{{arch}}_figures.log",
    benchmark:
        f"{RESULTS}/benchmarks/paper2/sweep/{{arch}}_figures.tsv"
    threads: 1
    script:
        "../scripts/paper2_sweep_figures.py"


rule p2_cluster_size:
    conda:
        "../../envs/edgeprune.yaml"
    input:
        p2_sweep_csvs,
    output:
        json=f"{P2_ROOT}/cluster_size/{{arch}}.json",
        figures=p2_figure_files("period_evidence_{arch}"),
    params:
        settings=p2_params("period", "cluster", "whole"),
    log:
        f"{RESULTS}/logs/paper2/cluster_size/{{arch}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/paper2/cluster_size/{{arch}}.tsv"
    threads: 1
    script:
        "../scripts/paper2_cluster_size.py"


rule p2_whole_build:
    conda:
        "../../envs/edgeprune.yaml"
    input:
        data_ready,
        model=f"{RESULTS}/models/{{arch}}/base.keras",
        spec=f"{RESULTS}/models/{{arch}}/base.spec.json",
        sizes=f"{P2_ROOT}/cluster_size/{{arch}}.json",
    output:
        models=temp(directory(f"{P2_ROOT}/whole/{{arch}}/models_{{method}}")),
        json=f"{P2_ROOT}/whole/{{arch}}/{{method}}.json",
    params:
        settings=p2_params("whole", "accuracy", "eval_images", "targets"),
    log:
        f"{RESULTS}/logs/paper2/whole/{{arch}}/{{method}}_build.log",
    benchmark:
        f"{RESULTS}/benchmarks/paper2/whole/{{arch}}/{{method}}_build.tsv"
    wildcard_constraints:
        method="filter|cluster",
    threads: THREADS
    script:
        "../scripts/paper2_whole_build.py"


rule p2_whole_time:
    conda:
        "../../envs/edgeprune.yaml"
    input:
        builds=expand(f"{P2_ROOT}/whole/{{{{arch}}}}/{{method}}.json", method=P2_METHODS),
        models=expand(f"{P2_ROOT}/whole/{{{{arch}}}}/models_{{method}}", method=P2_METHODS),
        spec=f"{RESULTS}/models/{{arch}}/base.spec.json",
        video=APP_VIDEO,
    output:
        csv=f"{P2_ROOT}/whole/{{arch}}/{{target}}.csv",
        raw=directory(f"{P2_ROOT}/whole/{{arch}}/raw_{{target}}"),
    params:
        timing=p2_params("whole.timing"),
        app=p2_params("app_fps", "tables"),
        target=target_spec,
    log:
        f"{RESULTS}/logs/paper2/whole/{{arch}}/{{target}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/paper2/whole/{{arch}}/{{target}}.tsv"
    wildcard_constraints:
        target=P2_TARGET_RE,
    threads: timing_threads
    resources:
        **device_resources(),
    script:
        "../scripts/paper2_whole_time.py"


rule p2_report:
    conda:
        "../../envs/edgeprune.yaml"
    input:
        sizes=expand(f"{P2_ROOT}/cluster_size/{{arch}}.json", arch=P2.archs),
        builds=expand(f"{P2_ROOT}/whole/{{arch}}/{{method}}.json", arch=P2.archs,
                      method=P2_METHODS),
        whole=expand(f"{P2_ROOT}/whole/{{arch}}/{{target}}.csv", arch=P2.archs,
                     target=P2_TARGETS),
    output:
        table1=f"{P2_ROOT}/table1.csv",
        table2=f"{P2_ROOT}/table2.csv",
        table3=f"{P2_ROOT}/table3.csv",
        periods=f"{P2_ROOT}/periods.csv",
        summary=f"{P2_ROOT}/summary.md",
        figures=[f for names in report_figures(P2.archs).values() for n in names
                 for f in p2_figure_files(n)],
    params:
        settings=p2_params("tables", "targets"),
    log:
        f"{RESULTS}/logs/paper2/report.log",
    benchmark:
        f"{RESULTS}/benchmarks/paper2/report.tsv"
    threads: 1
    script:
        "../scripts/paper2_report.py"


rule openvino_ir:
    conda:
        "../../envs/edgeprune.yaml"
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
    threads: THREADS
    script:
        "../scripts/paper2_openvino_ir.py"


rule p2_openvino_accuracy:
    conda:
        "../../envs/edgeprune.yaml"
    input:
        data_ready,
        evals=expand(f"{RESULTS}/eval/{{arch}}/base/{{runtime}}.json", arch=P2.archs,
                     runtime=["keras", "openvino-fp32", "openvino-fp16"]),
    output:
        f"{P2_ROOT}/openvino_accuracy.csv",
    params:
        settings=config_params("seed", "data.test_sets", "evaluation"),
    log:
        f"{RESULTS}/logs/paper2/openvino_accuracy.log",
    benchmark:
        f"{RESULTS}/benchmarks/paper2/openvino_accuracy.tsv"
    threads: 1
    script:
        "../scripts/paper2_openvino_accuracy.py"


rule paper2:
    conda:
        "../../envs/edgeprune.yaml"
    input:
        rules.p2_report.output,
        expand(p2_figure_files("fig5_sweep_latency_{arch}"), arch=P2.archs),
        expand(p2_figure_files("fig8_sweep_map_{arch}"), arch=P2.archs),
        f"{P2_ROOT}/openvino_accuracy.csv",
