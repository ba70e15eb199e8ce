"""muscale.Recorder as a Hugging Face `TrainerCallback`:

    trainer = Trainer(model, args, train_dataset=data, callbacks=[MuscaleCallback("runs/w256-s0", mode="mup")])

The width, depth and family default to the model's config (hidden_size, num_hidden_layers,
model_type), the seed, learning rate and weight decay to the TrainingArguments; anything
else goes to the Recorder as given. The Trainer hands its callbacks no per-step loss, so none
is recorded; with a `probe` batch (a dict such as {"input_ids": ids}) every statistic is."""

from ..errors import InputError
from ..run.recorder import Recorder

try:
    from transformers import TrainerCallback
except ImportError as missing:
    raise ImportError("muscale.integrations.hf needs transformers: pip install 'muscale[hf]'") from missing


class MuscaleCallback(TrainerCallback):
    def __init__(self, run_dir, **recorder):
        self.run_dir, self.options, self.recorder = run_dir, recorder, None

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        config = getattr(model, "config", None)
        found = {
            "width": getattr(config, "hidden_size", None),
            "depth": getattr(config, "num_hidden_layers", None),
            "family": getattr(config, "model_type", None),
            "seed": args.seed,
            "lr": args.learning_rate,
            "weight_decay": args.weight_decay,
        }
        options = {k: v for k, v in found.items() if v is not None} | self.options
        if "width" not in options:
            raise InputError("width", "the model has no config.hidden_size", "pass MuscaleCallback(..., width=N)")
        self.recorder = Recorder(model, self.run_dir, optimizer=optimizer, start=state.global_step, **options)

    def on_step_end(self, args, state, control, **kwargs):
        self.recorder.step(state.global_step - 1)

    def on_train_end(self, args, state, control, **kwargs):
        self.recorder.close()
