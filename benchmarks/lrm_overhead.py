"""Training-step cost of learnable multipliers: the plain model against `--lrm-impl autograd`
and `--lrm-impl fused`, on the transformer, with the paper's placement (lrm.PAPER_PLACEMENT).

A step is what muscale's trainer does: forward, cross-entropy, backward, AdamW step with
weight decay. The three models of a width are built in one process and take turns, a few
steps each, round after round, so the machine's speed and most of its load cancel out of
the ratios; each side's time is the median over rounds. The multipliers' extra work per
matrix (the product r·W·c, the factors' gradients) is a few passes over the matrix, while
the matmuls grow with the tokens of a batch too, so the ratio falls as batches grow:
`--tokens` sets batch × sequence length. Targets are printed, not enforced.

    python benchmarks/lrm_overhead.py [--widths 512,2048] [--tokens 2048] [--rounds 5] [--threads N]
"""

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from docs_section import written

import muscale
from muscale.models import lrm, modes, optim
from muscale.models.families import resolve

SEQ_LEN = 128
TARGET, GOAL = 1.10, 1.05  # fused over plain at the largest width
SIDES = {"plain": ("sp", None), "autograd": ("lrm", "autograd"), "fused": ("lrm", "fused")}


def build(side: str, width: int, batch: int):
    mode, impl = SIDES[side]
    spec = muscale.plan(
        mode,
        "transformer",
        widths=(width // 2, width),
        seeds=1,
        optimizer="adamw",
        lr=1e-3,
        weight_decay=0.1,
        batch_size=batch,
        seq_len=SEQ_LEN,
        options={"layers": 2},
        **({"lrm_impl": impl, "multipliers": lrm.PAPER_PLACEMENT} if impl else {}),
    )[-1]
    family = resolve("transformer")
    model, mults = modes.build(spec, family)
    return model, optim.build(spec, model, mults), family.batch(0, batch, SEQ_LEN)


def step(model, opt, x, y):
    loss = F.cross_entropy(model(x).reshape(-1, model.head.out_features), y.reshape(-1))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def time_steps(side, steps: int) -> float:
    model, opt, (x, y) = side
    start = time.perf_counter()
    for _ in range(steps):
        step(model, opt, x, y)
    return (time.perf_counter() - start) / steps


def measure(width: int, tokens: int, rounds: int, steps: int) -> dict[str, float]:
    sides = {name: build(name, width, max(1, tokens // SEQ_LEN)) for name in SIDES}
    for side in sides.values():
        time_steps(side, 2)  # warm-up: allocator, first Adam state
    times = {name: [] for name in sides}
    for _ in range(rounds):
        for name, side in sides.items():
            times[name].append(time_steps(side, steps))
    return {name: statistics.median(t) for name, t in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default="512,2048")
    parser.add_argument("--tokens", type=int, default=2048, help="tokens per batch (batch × 128)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=2, help="steps per side per round")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"transformer, 2 layers, {args.tokens} tokens per step, AdamW, {torch.get_num_threads()} threads, "
        f"median of {args.rounds} rounds × {args.steps} steps"
    )
    print(f"{'width':>6} {'plain s/step':>13} {'autograd/plain':>15} {'fused/plain':>12}")
    for width in (int(w) for w in args.widths.split(",")):
        t = measure(width, args.tokens, args.rounds, args.steps)
        print(f"{width:>6} {t['plain']:>13.3f} {t['autograd'] / t['plain']:>15.3f} {t['fused'] / t['plain']:>12.3f}")
    print(f"target: fused/plain ≤ {TARGET} at the largest width (goal {GOAL})")


if __name__ == "__main__":
    with written(__file__):
        main()
