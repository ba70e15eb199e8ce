"""How close the probes' spectral norms come to an exact SVD, Lanczos against the power
iteration it replaced, at the round counts each would use (cold / warm W / warm ΔW).

Runs the harness of tests/test_probes.py (the mlp, 5 Adam steps, every recorded weight_spec
and update_spec against torch.linalg.matrix_norm(·, 2)) with the probes' spectral routine
swapped; prints the worst relative error per mode and width, and the products with W or Wᵀ
each setting spends per matrix and recorded step.

    python benchmarks/spectral_accuracy.py
"""

import sys
from pathlib import Path

import torch
from docs_section import written

from muscale.measure import matrices
from muscale.models import spectral

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_probes import trained_with_probes

SETTINGS = {  # name: (routine, cold, warm W, warm ΔW)
    "lanczos 12/3/4 (muscale)": (spectral.top_singular, 12, 3, 4),
    "power 16/4/8 (before)": (spectral.power_iteration, 16, 4, 8),
    "power 12/3/4": (spectral.power_iteration, 12, 3, 4),
    "lanczos 8/2/4": (spectral.top_singular, 8, 2, 4),
}
CASES = [(mode, width) for mode in ("sp", "mup") for width in (256, 1024)]


def main() -> int:
    torch.set_num_threads(1)
    print(f"{'setting':<26}{'products/step':>14}" + "".join(f"{m + ' ' + str(w):>14}" for m, w in CASES))
    for name, (routine, cold, warm, update) in SETTINGS.items():
        matrices.top_singular = routine
        matrices.SPECTRAL_COLD, matrices.SPECTRAL_WARM, matrices.SPECTRAL_UPDATE = cold, warm, update
        worst = [max(trained_with_probes(mode, width).values()) for mode, width in CASES]
        print(f"{name:<26}{2 * (warm + update):>14}" + "".join(f"{e:>14.2%}" for e in worst))
    return 0


if __name__ == "__main__":
    with written(__file__):
        status = main()
    raise SystemExit(status)
