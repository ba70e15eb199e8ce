"""muscale.Recorder as a Lightning `Callback`:

    trainer = lightning.Trainer(callbacks=[MuscaleCallback("runs/w256-s0", width=256, mode="mup")])

The recorder is built when training starts, on the LightningModule and the trainer's first
optimizer; it records after each optimizer step (not after each micro-batch of an
accumulation), with the loss the training step returned."""

from ..run.recorder import Recorder

try:
    from lightning.pytorch import Callback
except ImportError as missing:
    raise ImportError("muscale.integrations.lightning needs lightning: pip install 'muscale[lightning]'") from missing


class MuscaleCallback(Callback):
    def __init__(self, run_dir, **recorder):
        self.run_dir, self.options, self.recorder, self.steps = run_dir, recorder, None, None

    def on_train_start(self, trainer, pl_module):
        optimizer = trainer.optimizers[0] if trainer.optimizers else None
        self.steps = trainer.global_step
        self.recorder = Recorder(pl_module, self.run_dir, optimizer=optimizer, start=self.steps, **self.options)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.steps:  # inside a gradient accumulation: no step taken yet
            return
        self.steps = trainer.global_step
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        self.recorder.step(self.steps - 1, **({"loss": loss} if loss is not None else {}))

    def on_train_end(self, trainer, pl_module):
        self.recorder.close()
