"""Stage: generate the embedded dataset in VOC layout."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgeprune.config import SYNTH_DIR
from edgeprune.data.synthetic import generate_dataset
from edgeprune.fileio import write_json
from edgeprune.jobs import JobLog


def generate(config: Mapping[str, Any], devkit: str | Path, summary: str | Path,
             log: JobLog) -> dict[str, Any]:
    """Write ``<devkit>/SYNTH`` and a JSON summary of what was generated."""
    syn = config["data"]["synthetic"]
    root = Path(devkit) / SYNTH_DIR
    log(f"generating {sum(syn['splits'].values())} images into {root}")
    result = generate_dataset(
        root, syn["classes"], dict(syn["splits"]), tuple(syn["image_size"]),
        seed=int(config.get("seed", 0)), min_objects=int(syn["min_objects"]),
        max_objects=int(syn["max_objects"]), scale_range=tuple(syn["scale_range"]),
        progress=log.progress("images"),
    )
    write_json(summary, result)
    return result
