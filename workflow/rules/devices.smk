# Stage: edge devices. Latency of paper 1's Table 2 models on each benchmark target, all models
# of one target timed together in one interleaved job (edgeprune.measurement.compare), and application FPS
# over a video. Targets, device resources and input functions: common.smk. Besides the Snakemake
# resource, every timing job holds a lock on the device itself (edgeprune.measurement.devices), and
# the device's raw output is written under logs/ first, so a failed job keeps it.


rule demo_video:
    input:
        data_ready,
    output:
        f"{RESULTS}/data/demo.avi",
    log:
        f"{RESULTS}/logs/data/demo_video.log",
    benchmark:
        f"{RESULTS}/benchmarks/data/demo_video.tsv"
    conda:
        "../../envs/edgeprune.yaml"
    params:
        settings=config_params("app"),
    script:
        "../scripts/demo_video.py"


rule latency_compare:
    input:
        models=table2_timing_models,
    output:
        json=f"{RESULTS}/latency/{{target}}/{{arch}}/table2.json",
        raw=f"{RESULTS}/latency/{{target}}/{{arch}}/table2.log",
    log:
        f"{RESULTS}/logs/latency/{{target}}/{{arch}}/table2.log",
        # the device's output, kept when the job fails (the `raw` output is then deleted)
        raw=f"{RESULTS}/logs/latency/{{target}}/{{arch}}/table2.raw.log",
    benchmark:
        f"{RESULTS}/benchmarks/latency/{{target}}/{{arch}}/table2.tsv"
    wildcard_constraints:
        target=TIMING_CONSTRAINTS["target"],
    conda:
        "../../envs/edgeprune.yaml"
    threads: timing_threads
    resources:
        **device_resources(),
    params:
        target=target_spec,  # includes seconds, block_runs, blocks_per_group, warmup, threads
        settings=config_params("seed"),
    script:
        "../scripts/latency_compare.py"


rule app_fps:
    input:
        model=timing_model,
        spec=spec_file,
        video=APP_VIDEO,
    output:
        json=f"{RESULTS}/app/{{target}}/{{arch}}/{{variant}}_{{dtype}}.json",
        raw=f"{RESULTS}/app/{{target}}/{{arch}}/{{variant}}_{{dtype}}.log",
    log:
        f"{RESULTS}/logs/app/{{target}}/{{arch}}/{{variant}}_{{dtype}}.log",
        raw=f"{RESULTS}/logs/app/{{target}}/{{arch}}/{{variant}}_{{dtype}}.raw.log",
    benchmark:
        f"{RESULTS}/benchmarks/app/{{target}}/{{arch}}/{{variant}}_{{dtype}}.tsv"
    wildcard_constraints:
        **TIMING_CONSTRAINTS,
    conda:
        "../../envs/edgeprune.yaml"
    threads: timing_threads
    resources:
        **device_resources(),
    params:
        threads=THREADS,  # inference threads on this machine when the target sets none
        target=target_spec,
        settings=config_params("app", "postprocess"),
    script:
        "../scripts/app_fps.py"
