"""Records as TensorBoard scalars, for people who look there: one TensorBoard run per muscale
run, tagged norms/<module>/<metric> at its recorded steps, the names `muscale import
tensorboard` reads back (importers.py)."""

import secrets
import shutil
from pathlib import Path

import polars as pl

from ..errors import InputError


def export(records: pl.DataFrame, folder: Path) -> list[Path]:
    """Write `records` into `folder`, swapped in whole: a reader sees the old export or the new one."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise InputError(
            "export tensorboard", "tensorboard is not installed", "pip install 'muscale[tensorboard]'"
        ) from None
    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.{secrets.token_hex(6)}.tmp")
    try:
        for (run_id,), rows in records.sort("step").group_by("run_id", maintain_order=True):
            writer = SummaryWriter(str(tmp / run_id))
            for module, metric, step, value in rows.select("module", "metric", "step", "value").iter_rows():
                writer.add_scalar(f"norms/{module}/{metric}", value, step)
            writer.close()
        shutil.rmtree(folder, ignore_errors=True)
        tmp.replace(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return sorted(p for p in folder.iterdir() if p.is_dir())
