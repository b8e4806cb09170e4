# Stage: edge devices. Latency of paper 1's Table 2 models on each benchmark target, all models
# of one target timed together in one interleaved job (edgeprune.measurement.compare), and application FPS
# over a video. Targets, device resources and input functions: common.smk.


rule demo_video:
    conda:
        "../../envs/edgeprune.yaml"
    input:
        data_ready,
    output:
        f"{RESULTS}/data/demo.avi",
    params:
        settings=config_params("app"),
    log:
        f"{RESULTS}/logs/data/demo_video.log",
    benchmark:
        f"{RESULTS}/benchmarks/data/demo_video.tsv"
    script:
        "../scripts/demo_video.py"


rule latency_compare:
    conda:
        "../../envs/edgeprune.yaml"
    input:
        models=table2_timing_models,
    output:
        json=f"{RESULTS}/latency/{{target}}/{{arch}}/table2.json",
        raw=f"{RESULTS}/latency/{{target}}/{{arch}}/table2.log",
    params:
        target=target_spec,  # includes seconds, block_runs, blocks_per_group, warmup, threads
        settings=config_params("seed"),
    log:
        f"{RESULTS}/logs/latency/{{target}}/{{arch}}/table2.log",
    benchmark:
        f"{RESULTS}/benchmarks/latency/{{target}}/{{arch}}/table2.tsv"
    wildcard_constraints:
        target=TIMING_CONSTRAINTS["target"],
    threads: timing_threads
    resources:
        **device_resources(),
    script:
        "../scripts/latency_compare.py"


rule app_fps:
    conda:
        "../../envs/edgeprune.yaml"
    input:
        model=timing_model,
        spec=spec_file,
        video=APP_VIDEO,
    output:
        json=f"{RESULTS}/app/{{target}}/{{arch}}/{{variant}}_{{dtype}}.json",
        raw=f"{RESULTS}/app/{{target}}/{{arch}}/{{variant}}_{{dtype}}.log",
    params:
        threads=THREADS,  # inference threads on this machine when the target sets none
        target=target_spec,
        settings=config_params("app", "postprocess"),
    log:
        f"{RESULTS}/logs/app/{{target}}/{{arch}}/{{variant}}_{{dtype}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/app/{{target}}/{{arch}}/{{variant}}_{{dtype}}.tsv"
    wildcard_constraints:
        **TIMING_CONSTRAINTS,
    threads: timing_threads
    resources:
        **device_resources(),
    script:
        "../scripts/app_fps.py"
