"""The probes' share of a long-horizon run: the default `lrm` run of the transformer at each
width, once as muscale trains it (every metric at the recorded steps) and once with probes
that record nothing but the loss (the bare training loop), each side the median of a few
alternating repeats, in CPU seconds of the one thread (so neighbours on a shared machine
change little). Probes run only at the recorded steps (0, 1, 2, 4, … and 13
log-spaced steps over the last third), so their share should stay ≤ 10 %; printed, not enforced.

    python benchmarks/probe_share.py [--widths 32,128] [--repeats 3]
"""

import argparse
import contextlib
import statistics
import time

import torch
from docs_section import written

import muscale
from muscale.run import train

TARGET = 0.10


class Bare:
    """Probes that watch nothing: what train.run costs without measuring."""

    nonfinite = False  # what the trainer reads to stop a diverging run

    def __init__(self, model, metrics=None, optimizer=None):
        pass

    def watch(self, step):
        return contextlib.nullcontext()

    def snapshot(self):
        pass

    def collect(self, step, **losses):
        values = [v.item() for v in losses.values()]
        return {
            "step": [step] * len(values),
            "module": ["loss"] * len(values),
            "role": ["loss"] * len(values),
            "metric": list(losses),
            "value": values,
        }


def timed(spec, probes) -> float:
    train.Probes = probes
    start = time.process_time()  # CPU time of this one-thread process: a busy machine slows, not skews, it
    train.run(spec, "cpu")
    return time.process_time() - start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--widths", default="32,128")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    real = train.Probes
    for width in map(int, args.widths.split(",")):
        spec = next(s for s in muscale.plan("lrm", "transformer", seeds=1) if s.width == width)
        full, bare = [], []
        for _ in range(args.repeats):
            full.append(timed(spec, real))
            bare.append(timed(spec, Bare))
        f, b = statistics.median(full), statistics.median(bare)
        print(
            f"width {width}: {spec.steps} steps, {len(spec.record_steps)} recorded; with probes {f:.2f} CPU s, "
            f"bare {b:.2f} CPU s: probes' share {(f - b) / f:.1%} (target ≤ {TARGET:.0%})"
        )


if __name__ == "__main__":
    with written(__file__):
        main()
