"""muscale.Recorder in a plain loop: what it costs against the same loop without it, and what
`muscale fit` makes of the plain-loop example's sweep (examples/plain_loop.py).

Cost: one model (muscale's built-in transformer, mode sp, Adam, its fixed batch) trained for
`--steps` steps and measured once more after the last, as muscale's short horizon does, by a
bare loop, by the same loop with a recorder whose schedule records nothing in the window
(the price of an unrecorded step), with a recorder recording every step (without a probe:
the training forward is measured; and with the fixed batch as its probe), and by muscale's
own loop recording every step (train.run, the short horizon). Sides take turns, in an order
that rotates each repetition; the fastest repetitions' ratios are printed against the targets (an
unrecorded step within 2% of the bare loop's, over the training steps alone; a recorded one
at most muscale's own, both timed from the model's build to the records on disk).

Science: the examples' sweeps, SP and μP (mup), two seeds, four Adam steps on one batch,
recorded in a plain loop, by Lightning and by the Hugging Face Trainer (hf:llama); the hidden
matrices' activation change at the last step.

    python benchmarks/recorder.py [--reps N] [--steps N] [--width N]
"""

import argparse
import contextlib
import io
import runpy
import tempfile
import time
from pathlib import Path

import polars as pl
import torch
from docs_section import written

import muscale
from muscale import api
from muscale.models import losses, modes, optim
from muscale.models.data import PROBE_INDEX
from muscale.models.families import resolve
from muscale.run import store, train

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"unrecorded / bare": 1.02, "recorded / muscale's loop": 1.0}
NEVER = (2**40,)


def sides(spec, out: Path):
    family = resolve(spec.family)
    x, y = family.batch(PROBE_INDEX, spec.batch_size, spec.seq_len)

    def loop(recorder: dict | None):
        def run(rep: int):
            start = time.perf_counter()  # from the build, as muscale's own loop is timed
            model, multipliers = modes.build(spec, family)
            opt = optim.build(spec, model, multipliers)
            rec = None
            if recorder is not None:
                rec = muscale.Recorder(
                    model, out / f"{rep}-{len(recorder)}-{id(recorder)}", width=spec.width, optimizer=opt, **recorder
                )
            loop_start = time.perf_counter()
            for step in range(spec.steps):
                loss = losses.cross_entropy(model(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if rec is not None:
                    rec.step(step, loss=loss)
            loss = losses.cross_entropy(model(x), y)  # the forward muscale's loop measures as step `steps`
            if rec is not None:
                rec.step(spec.steps, loss=loss)
            loop_end = time.perf_counter()
            if rec is not None:
                rec.close()
            return time.perf_counter() - start, loop_end - loop_start

        return run

    def own(rep: int):
        start = time.perf_counter()
        store.write_run(out / f"own-{rep}", spec, train.run(spec))  # the short horizon records every step
        seconds = time.perf_counter() - start
        return seconds, seconds

    return {
        "bare": loop(None),
        "unrecorded": loop({"steps": NEVER}),
        "recorded": loop({"every": 1}),
        "recorded, probe": loop({"every": 1, "probe": x}),
        "muscale's loop": own,
    }


def cost(args):
    spec = muscale.plan("sp", "transformer", widths=(args.width, 2 * args.width), seeds=1, steps=args.steps)[0]
    print(
        f"transformer, mode sp, width {spec.width}, batch {spec.batch_size}×{spec.seq_len}, {spec.steps} steps, {torch.get_num_threads()} torch thread(s)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        runs = sides(spec, Path(tmp))
        names = list(runs)
        times = {name: [] for name in names}
        for rep in range(-1, args.reps):  # rep -1 warms every side up and is not counted
            for name in names[rep % len(names) :] + names[: rep % len(names)]:
                seconds = runs[name](rep)
                if rep >= 0:
                    times[name].append(seconds)
    # The fastest repetition, the one the machine disturbed least: at 10 ms a step, one
    # repetition's median moves by more than the 2% the targets are about.
    whole = {name: min(t[0] for t in ts) / spec.steps for name, ts in times.items()}
    loop = {name: min(t[1] for t in ts) / spec.steps for name, ts in times.items()}
    print(f"\nmilliseconds per step, fastest of {args.reps} repetitions: with the model's build and the")
    print("recorder's construction and close, and of the training steps alone")
    for name in names:
        print(f"  {name:<18}{1e3 * whole[name]:>9.2f}{1e3 * loop[name]:>9.2f}")
    ratios = {
        "unrecorded / bare": loop["unrecorded"] / loop["bare"],
        "recorded / bare": whole["recorded"] / whole["bare"],
        "recorded / muscale's loop": whole["recorded"] / whole["muscale's loop"],
        "probe / muscale's loop": whole["recorded, probe"] / whole["muscale's loop"],
    }
    print("\nratios")
    for name, ratio in ratios.items():
        target = TARGETS.get(name)
        verdict = "" if target is None else f"   target ≤ {target:.2f}: {'met' if ratio <= target else 'over target'}"
        print(f"  {name:<28}{ratio:>6.3f}{verdict}")


def fitted(example: str, roles: tuple[str, ...]):
    """Run an example's sweep (SP and μP, its widths, seeds 0 and 1) into a temporary
    directory; print each mode's median α of `roles`' activation change at the last step."""
    module = runpy.run_path(str(ROOT / "examples" / example))
    widths = module.get("WIDTHS", (64, 128, 256, 512, 1024))
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):  # the trainers' own prints
        for mode in ("sp", "mup"):
            for width in widths:
                for seed in (0, 1):
                    if example == "plain_loop.py":
                        module["train"](width, mode, seed, tmp, steps=4, lr=1e-2)
                    else:
                        module["train"](tmp, mode, width, seed)
        exponents = api.analyse(Path(tmp)).analysis.exponents
    rows = exponents.filter((pl.col("metric") == "dact_rms") & (pl.col("step") == 3) & pl.col("role").is_in(roles))
    medians = rows.group_by("mode").agg(pl.col("alpha").median(), pl.len()).sort("mode", descending=True)
    print(f"  {example:<22}{','.join(map(str, widths)):<24}", end="")
    print(
        "  ".join(f"{mode} d^{alpha:+.3f}" for mode, alpha, _ in medians.iter_rows()),
        f"  ({rows.height // 2} matrices)",
    )


def science():
    print("\nSP and μP sweeps recorded in three trainers, 2 seeds, 4 Adam steps on one batch, lr 1e-2:")
    print("median α of the hidden matrices' activation change (dact_rms) at step 3, by muscale fit")
    fitted("plain_loop.py", ("hidden",))
    fitted("lightning_module.py", ("hidden",))
    fitted("hf_trainer.py", ("attn_q", "attn_k", "attn_v", "mlp_up", "mlp_gate"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--width", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cost(args)
    science()


if __name__ == "__main__":
    with written(__file__):
        main()
