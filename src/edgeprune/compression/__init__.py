"""Compression: magnitude pruning (prune, paper 1), post-training quantization and TFLite conversion
(quantize), OpenVINO IR conversion and inference (openvino_rt), model sizes (size), and paper 2's
hardware-aware cluster pruning (cluster)."""
