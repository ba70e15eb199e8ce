"""Blocks by position, so that models of different depths are compared like with like: block
k of a depth-L model is `first` (k = 0), `middle` (k = L // 2) and `last` (k = L − 1), its
index replaced by that word in the module's name (blocks.7.attn.o → blocks.last.attn.o).
At depth 2 the middle block is the last. Blocks elsewhere are left out of a depth fit;
modules outside the blocks (embedding, head, loss) keep their names."""

import polars as pl

POSITIONS = ("first", "middle", "last")
# The first index in a dotted name (blocks.3.attn.o, model.layers.3.mlp.down_proj), with what
# stands around it: records hold names only, and models/depth.py names blocks by their list's index.
_SPLIT = r"^((?:.*?\.)?)(\d+)((?:\..*)?)$"


def over_depths(records: pl.DataFrame) -> bool:
    """Whether the records span two depths or more: what a fit across depth needs."""
    return "depth" in records.columns and records["depth"].drop_nulls().n_unique() >= 2


def block_index(module: pl.Expr) -> pl.Expr:
    """The index of the block a module's name puts it in; null outside the blocks."""
    return module.str.extract(_SPLIT, 2).cast(pl.Int64)


def by_position(records: pl.DataFrame) -> pl.DataFrame:
    """Records of runs with a depth, each block's rows once per position it holds."""
    data = records.filter(pl.col("depth").is_not_null()).with_columns(_index=block_index(pl.col("module")))
    outside = data.filter(pl.col("_index").is_null())
    inside = data.filter(pl.col("_index").is_not_null())
    at = {"first": pl.lit(0), "middle": pl.col("depth") // 2, "last": pl.col("depth") - 1}
    placed = [
        inside.filter(pl.col("_index") == at[p]).with_columns(
            module=pl.col("module").str.extract(_SPLIT, 1) + p + pl.col("module").str.extract(_SPLIT, 3)
        )
        for p in POSITIONS
    ]
    return pl.concat([outside, *placed]).drop("_index")
