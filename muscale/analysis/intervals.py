"""The 95% intervals every analysis reports, in one place so that a width exponent, an
equilibrium exponent and a learning-rate optimum are bounded by the same rule: over seeds,
a t-interval of the mean of per-seed estimates; with one seed, the regression's own
standard error."""

import math

import numpy as np
from scipy import stats

LEVEL = 0.95


def _t(dof) -> np.ndarray:
    return stats.t.ppf(0.5 + LEVEL / 2, dof)


def over_seeds(sd, n) -> np.ndarray:
    """Half-width of the interval of a mean over `n` seeds whose estimates have sample
    standard deviation `sd`; NaN with fewer than two seeds."""
    sd, n = np.asarray(sd, dtype=float), np.asarray(n, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n >= 2, _t(np.maximum(n - 1, 1)) * sd / np.sqrt(n), np.nan)


def difference(sd_a, n_a, sd_b, n_b) -> np.ndarray:
    """Half-width of the interval of a difference of two means over seeds (Welch: each side
    its own spread, the Welch–Satterthwaite degrees of freedom); NaN with fewer than two
    seeds on either side."""
    va, vb = (np.asarray(sd, dtype=float) ** 2 / np.asarray(n, dtype=float) for sd, n in ((sd_a, n_a), (sd_b, n_b)))
    na, nb = np.asarray(n_a, dtype=float), np.asarray(n_b, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        dof = (va + vb) ** 2 / (va**2 / (na - 1) + vb**2 / (nb - 1))
        half = _t(np.maximum(np.nan_to_num(dof, nan=1.0), 1)) * np.sqrt(va + vb)
        return np.where((na >= 2) & (nb >= 2), half, np.nan)


def slope_from_sums(alpha, sxx, syy, n) -> np.ndarray:
    """Half-width of a simple regression's slope from its sums of squares (Σ(x−x̄)², Σ(y−ȳ)²)
    over `n` points; NaN with fewer than three."""
    alpha, sxx, syy, n = (np.asarray(a, dtype=float) for a in (alpha, sxx, syy, n))
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.sqrt(np.maximum(syy - alpha**2 * sxx, 0) / (n - 2) / sxx)
        return np.where(n >= 3, _t(np.maximum(n - 2, 1)) * se, np.nan)


def ols(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Coefficients past the intercept, their half-widths, and R², of y on [1, x]."""
    design = np.column_stack([np.ones(len(y)), x])
    beta, *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = y - design @ beta
    dof = len(y) - design.shape[1]
    total = ((y - y.mean()) ** 2).sum()
    r2 = 1 - (residual**2).sum() / total if total > 0 else math.nan
    if dof < 1:
        return beta[1:], np.full(len(beta) - 1, math.nan), r2
    cov = (residual**2).sum() / dof * np.linalg.pinv(design.T @ design)
    return beta[1:], _t(dof) * np.sqrt(np.diag(cov)[1:]), r2
