"""What layers and probe points output, seen by forward hooks while a probe watches."""

import contextlib
from collections.abc import Callable

import torch
from torch import nn

from ..models import lrm
from ..models.points import ProbePoint
from ..models.roles import is_conv1d, role_of
from .metrics import METRIC_TABLE, any_of, rms, statistics

_VECTOR = object()  # a QK point whose query or key has a vector multiplier: no exact raw logits


def _raw_scale(point: str, modules: dict[str, nn.Module]):
    """The scalar multipliers of a QK point's sibling query and key (an empty list when they
    have none), or _VECTOR when either has a vector one, which no scalar undoes."""
    parent = point.rpartition(".")[0]
    scalars = []
    for name, module in modules.items():
        if name.rpartition(".")[0] != parent or role_of(name, module) not in ("attn_q", "attn_k"):
            continue
        if hasattr(module, "parametrizations"):
            mult = module.parametrizations.weight[0]
            if not isinstance(mult, lrm.ScalarMultiplier):
                return _VECTOR
            scalars.append(mult)
    return scalars


class Activations:
    """Hooks every probed layer while `watch` is open. A point's measure (the QK logits, a
    (B, H, T, T) product) runs only when a statistic of it is wanted, its extras each only for
    their own metric, and the step-0 copy of every output only for `dact_rms`."""

    def __init__(self, model: nn.Module, layers: list[tuple[str, nn.Module, str]], wanted: set[str], add: Callable):
        self.wanted, self.add = wanted, add
        self.layers = layers if any_of("activation", wanted) else []
        self.outputs = statistics("output", wanted)
        # Statistics of what a layer outputs or a point measures; a point's other metrics are
        # its extras, functions of the tensors it is called with.
        self.of_output = any(d.of == "output" or m == "act_max" for m, d in METRIC_TABLE.items() if m in wanted)
        self.raw = {}
        if "raw_act_rms" in wanted:
            modules = dict(model.named_modules())
            self.raw = {name: _raw_scale(name, modules) for name, _, role in layers if role == "attn_qk"} | {
                name: None for name, module, _ in layers if hasattr(module, "parametrizations")
            }
        self._first: dict[str, torch.Tensor] = {}
        # The stream entering the first block, for what the blocks have built on it since.
        self._first_block = next((n for n, _, r in self.layers if r == "block"), None)
        self._entering: torch.Tensor | None = None

    @contextlib.contextmanager
    def watch(self, step: int, training: bool = False):
        handles = [m.register_forward_hook(self._hook(n, r, step, training)) for n, m, r in self.layers]
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    def _hook(self, name: str, role: str, step: int, training: bool):
        def hook(module, args, output):
            if training and not torch.is_grad_enabled():
                return
            if role == "block":
                output = output[0] if isinstance(output, tuple) else output
                self._contribution(name, args, output, step)
            point = isinstance(module, ProbePoint)
            if point:
                args = tuple(a.detach() for a in args)
                output = module.measure(*args) if self.of_output else None
            y = output.detach().float() if self.of_output and isinstance(output, torch.Tensor) else None
            if y is not None:
                self._of_output(name, role, module, args, y, point)
            if point:
                for metric, fn in module.extras().items():
                    if metric in self.wanted:
                        self.add(name, role, metric, fn(*args))
            if y is not None and "dact_rms" in self.wanted:
                if step == 0:
                    self._first[name] = y.clone()
                elif name in self._first and self._first[name].shape == y.shape:
                    self.add(name, role, "dact_rms", rms(y - self._first[name]))

        return hook

    def _contribution(self, name: str, args: tuple, output, step: int):
        """A block's output less its input (the stream it was given), and less the stream that
        entered the first block, where the shapes match."""
        wanted = self.wanted & {"contrib_rms", "dcontrib_rms", "built_rms"}
        x = args[0] if args else None
        if not wanted or not isinstance(output, torch.Tensor) or not isinstance(x, torch.Tensor):
            return
        if x.shape != output.shape:
            return
        y = output.detach().float()
        if name == self._first_block:
            self._entering = x.detach().float()
        if "built_rms" in wanted and self._entering is not None and self._entering.shape == y.shape:
            self.add(name, "block", "built_rms", rms(y - self._entering))
        delta = y - x.detach().float()
        if "contrib_rms" in wanted:
            self.add(name, "block", "contrib_rms", rms(delta))
        if "dcontrib_rms" in wanted:
            key = f"{name}#contrib"
            if step == 0:
                self._first[key] = delta.clone()
            elif key in self._first and self._first[key].shape == delta.shape:
                self.add(name, "block", "dcontrib_rms", rms(delta - self._first[key]))

    def _of_output(self, name: str, role: str, module: nn.Module, args: tuple, y: torch.Tensor, point: bool):
        for metric, fn in self.outputs:
            self.add(name, role, metric, fn(y))
        if name in self.raw:
            raw = self._raw_act(name, module, args, y)
            if raw is not None:
                self.add(name, role, "raw_act_rms", rms(raw))
        if point and "act_max" in self.wanted:
            self.add(name, role, "act_max", y.abs().max())

    def _raw_act(self, name: str, module: nn.Module, args: tuple, y: torch.Tensor) -> torch.Tensor | None:
        """A multiplied layer's output with its trained W alone; QK logits over s_q·s_k."""
        scalars = self.raw[name]
        if scalars is None:
            x, w = args[0].detach().float(), lrm.matrix(module).detach().float()
            return x @ w if is_conv1d(module) else torch.nn.functional.linear(x, w)  # Conv1D stores W (in, out)
        if scalars is _VECTOR:
            return None
        return y / torch.stack([s.scale() for s in scalars]).prod() if scalars else y
