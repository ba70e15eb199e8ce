"""A width sweep through Lightning, recorded by muscale's callback.

    python examples/lightning_module.py --out runs/lightning   # SP and μP, widths 64…1024
    muscale fit runs/lightning

The plain-loop example's MLP (examples/plain_loop.py) in a LightningModule, trained by a
Lightning Trainer for four steps on one batch with torch's Adam (SP) or mup's MuAdam (μP)."""

import argparse
import runpy
from pathlib import Path

import lightning
import mup
import torch

from muscale.integrations.lightning import MuscaleCallback

WIDTHS = (64, 128, 256, 512, 1024)
MLP = runpy.run_path(str(Path(__file__).with_name("plain_loop.py")))["model"]


class Classifier(lightning.LightningModule):
    def __init__(self, width: int, mode: str, lr: float):
        super().__init__()
        self.net, self.mode, self.lr = MLP(width, mode), mode, lr

    def forward(self, x):  # what the recorder's probe batch goes through
        return self.net(x)

    def training_step(self, batch, batch_idx):
        return torch.nn.functional.cross_entropy(self(batch[0]), batch[1])

    def configure_optimizers(self):
        return (mup.MuAdam if self.mode == "mup" else torch.optim.Adam)(self.parameters(), lr=self.lr)


def train(out: str, mode: str, width: int, seed: int, steps: int = 4, lr: float = 1e-2):
    torch.manual_seed(seed)
    module = Classifier(width, mode, lr)
    gen = torch.Generator().manual_seed(1234)
    x, y = torch.randn(32, 32, generator=gen), torch.randint(0, 10, (32,), generator=gen)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32)
    callback = MuscaleCallback(f"{out}/{mode}-w{width}-s{seed}", width=width, seed=seed, mode=mode, probe=x, every=1)
    trainer = lightning.Trainer(
        max_steps=steps,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[callback],
    )
    trainer.fit(module, loader)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/lightning")
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args()
    for mode in ("sp", "mup"):
        for width in WIDTHS:
            for seed in range(args.seeds):
                train(args.out, mode, width, seed)


if __name__ == "__main__":
    main()
