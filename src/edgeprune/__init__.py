"""edgeprune: compress SSD object detectors for edge devices.

Magnitude pruning, post-training quantization and hardware-aware cluster pruning.
"""

__version__ = "0.1.0"
