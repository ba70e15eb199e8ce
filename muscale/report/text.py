"""How numbers read in every report: signed exponents, 95% intervals, powers of two, a dash for what is missing."""

import math

DASH = "—"


def finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def signed(x: float | None, digits: int = 3) -> str:
    return f"{x:+.{digits}f}" if finite(x) else DASH


def interval(lo: float | None, hi: float | None, digits: int = 2) -> str:
    """A 95% interval as text, empty when either end is missing."""
    return f"[{lo:+.{digits}f}, {hi:+.{digits}f}]" if finite(lo) and finite(hi) else ""


def pow2(x: float) -> str:
    """A grid value as the power of two it is (grids are spaced in log2)."""
    return f"2^{math.log2(x):g}"


# How the command line prints a table.
TABLE = dict(
    tbl_rows=40,
    tbl_cols=-1,
    tbl_hide_dataframe_shape=True,
    tbl_hide_column_data_types=True,
    tbl_width_chars=140,
    float_precision=3,
)
