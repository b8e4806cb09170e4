# Stage: VOC mAP of any artifact (Keras, TFLite, OpenVINO IR) with one evaluator.


rule evaluate:
    input:
        data_ready,
        model=artifact_file,
        spec=spec_file,
    output:
        json=f"{RESULTS}/eval/{{arch}}/{{variant}}/{{runtime}}.json",
        detections=directory(
            f"{RESULTS}/eval/{{arch}}/{{variant}}/{{runtime}}_detections"
        ),
    log:
        f"{RESULTS}/logs/eval/{{arch}}/{{variant}}_{{runtime}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/eval/{{arch}}/{{variant}}_{{runtime}}.tsv"
    wildcard_constraints:
        variant="[A-Za-z0-9]+",
        runtime="keras|tflite-[a-z0-9]+|openvino-[a-z0-9]+",
    conda:
        "../../envs/edgeprune.yaml"
    threads: THREADS
    params:
        settings=config_params("data.test_sets", "postprocess", "evaluation"),
    script:
        "../scripts/evaluate.py"


rule base_summary:
    input:
        train=expand(f"{RESULTS}/models/{{arch}}/base.train.json", arch=ARCHS),
        evals=expand(f"{RESULTS}/eval/{{arch}}/base/keras.json", arch=ARCHS),
    output:
        report(
            f"{RESULTS}/base_detectors.csv",
            category="Base detectors",
            caption="../report/base_detectors.rst",
        ),
    log:
        f"{RESULTS}/logs/report/base_summary.log",
    conda:
        "../../envs/edgeprune.yaml"
    script:
        "../scripts/base_summary.py"
