"""A width sweep through the Hugging Face Trainer, recorded by muscale's callback.

    python examples/hf_trainer.py --out runs/llama     # SP and μP llama, widths 64…512
    muscale fit runs/llama

The model is a 2-layer llama at random init as muscale builds it (`hf:llama`; under μP its
head is a MuReadout, its attention scaled by 1/head_dim, its base shapes set), trained by
the Trainer for four steps on one batch of synthetic tokens with torch's Adam (SP) or mup's
MuAdam (μP). The callback reads width, depth, family, seed and learning rate from the model
and the TrainingArguments; the fixed batch is its probe."""

import argparse
from pathlib import Path

import mup
import torch
from transformers import Trainer, TrainingArguments

import muscale
from muscale.integrations.hf import MuscaleCallback
from muscale.models import modes
from muscale.models.data import PROBE_INDEX
from muscale.models.families import resolve

WIDTHS = (64, 128, 256, 512)


def train(out: str, mode: str, width: int, seed: int, steps: int = 4, lr: float = 1e-2, label: str | None = None):
    """`label` names the run's mode where it differs from the model's (a regression to gate)."""
    spec = next(
        s
        for s in muscale.plan(mode, "hf:llama", widths=WIDTHS, seeds=seed + 1, steps=steps, lr=lr)
        if s.width == width and s.seed == seed
    )
    family = resolve("hf:llama")
    model, _ = modes.build(spec, family)
    x, _ = family.batch(PROBE_INDEX, spec.batch_size, spec.seq_len)
    opt = (mup.MuAdam if mode == "mup" else torch.optim.Adam)(model.parameters(), lr=lr)
    args = TrainingArguments(
        str(Path(out) / ".trainer"),
        max_steps=steps,
        per_device_train_batch_size=len(x),
        learning_rate=lr,
        lr_scheduler_type="constant",
        seed=seed,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
    )
    callback = MuscaleCallback(f"{out}/{mode}-w{width}-s{seed}", mode=label or mode, probe={"input_ids": x}, every=1)
    data = [{"input_ids": row, "labels": row} for row in x]
    Trainer(model=model, args=args, train_dataset=data, optimizers=(opt, None), callbacks=[callback]).train()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/llama")
    parser.add_argument("--modes", default="sp,mup")
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args()
    for mode in args.modes.split(","):
        for width in WIDTHS:
            for seed in range(args.seeds):
                train(args.out, mode, width, seed)


if __name__ == "__main__":
    main()
