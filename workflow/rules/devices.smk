# Stage: edge devices. Latency of every converted model on each benchmark target (paper 1
# Table 2, paper 2 Table II) and application FPS over a video (paper 2 Table III). Targets,
# device resources and input functions: common.smk.


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


rule latency:
    conda:
        "../../envs/edgeprune.yaml"
    input:
        model=timing_model,
    output:
        json=f"{RESULTS}/latency/{{target}}/{{arch}}/{{variant}}_{{dtype}}.json",
        raw=f"{RESULTS}/latency/{{target}}/{{arch}}/{{variant}}_{{dtype}}.log",
    params:
        target=target_spec,
    log:
        f"{RESULTS}/logs/latency/{{target}}/{{arch}}/{{variant}}_{{dtype}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/latency/{{target}}/{{arch}}/{{variant}}_{{dtype}}.tsv"
    wildcard_constraints:
        **TIMING_CONSTRAINTS,
    threads: timing_threads
    resources:
        **device_resources(),
    script:
        "../scripts/latency.py"


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
