"""Import TensorFlow the one way this project supports: legacy Keras 2 (tf_keras), seeded, with
thread counts taken from the caller (Snakemake's ``threads:``)."""

from __future__ import annotations

import os
import random
from types import ModuleType

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def setup(threads: int | None = None, seed: int | None = None) -> tuple[ModuleType, ModuleType]:
    """Import ``tensorflow`` and ``tf_keras``, set intra/inter-op threads and seeds.

    Must run before any TensorFlow op executes (thread settings are fixed after that).
    """
    import numpy as np
    import tensorflow as tf
    import tf_keras

    if threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(int(threads))
            tf.config.threading.set_inter_op_parallelism_threads(max(1, min(2, int(threads))))
        except RuntimeError:
            pass  # already initialised in this process (tests); the first setting stays
    if seed is not None:
        random.seed(seed)
        np.random.seed(seed)
        tf.random.set_seed(seed)
        tf_keras.utils.set_random_seed(seed)
    return tf, tf_keras
