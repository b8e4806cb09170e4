"""Stage: tables (CSV) from the per-job JSON results."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from edgeprune.fileio import atomic_path, read_json
from edgeprune.jobs import JobLog


def write_csv(df: pd.DataFrame, path: str | Path) -> None:
    """Write a table atomically."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")


def base_summary(config: Mapping[str, Any], train_jsons: Sequence[str], eval_jsons: Sequence[str],
                 out_csv: str | Path, log: JobLog) -> pd.DataFrame:
    """One row per base detector: parameters, size, training time, mAP (VOC07 and all-point)."""
    rows = []
    for tj, ej in zip(train_jsons, eval_jsons, strict=True):
        t, e = read_json(tj), read_json(ej)
        m = t["metrics"]
        rows.append({
            "arch": t["arch"], "params": m["params"], "size_mb": m["size_mb"],
            "gzip_mb": m["gzip_mb"], "train_images": m["train_images"],
            "train_seconds": m["train_seconds"], "mAP_voc07": e["mAP_voc07"],
            "mAP_all": e["mAP_all"],
        })
    df = pd.DataFrame(rows)
    write_csv(df, out_csv)
    log("\n" + df.to_string(index=False))
    return df
