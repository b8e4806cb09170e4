"""PyTorch backend of paper 2 (issue 10): the paper-2 detectors as plain ``nn.Module``s, a
weight port from Keras, filter removal through Torch-Pruning's ``DependencyGraph`` and export
to the project's runtimes. The plan (θ_MW ranking, filter schedule, Algorithm 1) is the
framework-neutral one of :mod:`edgeprune.compression.cluster.algorithm`.

* :mod:`~edgeprune.compression.torch_backend.models` -- ``SSDTorch`` (same layer names, widths,
  anchors and output layout as the Keras detectors), ``DeployModel``, state_dict files;
* :mod:`~edgeprune.compression.torch_backend.port` -- Keras <-> torch weights;
* :mod:`~edgeprune.compression.torch_backend.prune` -- θ_MW as a Torch-Pruning importance,
  filter removal by dependency groups;
* :mod:`~edgeprune.compression.torch_backend.export` -- OpenVINO IR, ONNX and ``.tflite``,
  cost, mAP runner.

Importing this package imports torch; the Keras backend never does.
"""
