"""Exponential moving average of the model's weights (ultralytics ``ModelEMA``, with a run-length ramp).

After every optimizer step ``ema = d * ema + (1 - d) * model`` for every floating-point entry of the
``state_dict`` (weights, biases, batch-norm scales, shifts and running statistics; integer buffers
such as ``num_batches_tracked`` are copied), with the decay ramp

    ``d(u) = decay * (1 - exp(-u / tau))``,  ``u`` = number of updates so far (1 at the first).

Early in a run ``d`` is small, so the average follows the model closely; later it averages over the
last ``~1 / (1 - d)`` steps. Ultralytics uses ``decay=0.9999, tau=2000`` for runs of hundreds of
epochs (~10^5 steps and more); a fine-tune of a few epochs has tens to hundreds of steps, where
``tau=2000`` makes the average the raw model and ``decay=0.9999`` alone would freeze it at the
first few steps. :func:`ema_tau` and :func:`ema_decay` therefore scale both with the run's
length: ``tau`` = 10 % of the steps and the horizon ``1 / (1 - decay)`` = 10 % of the steps, each
capped at ultralytics' values (reached at 20 000 / 100 000 steps). At 36 steps (the coco128 split
measurement in :mod:`.train`): ``tau`` 3.6, ``decay`` 0.72.

The averaged model is what is validated, selected as ``best.pt`` and exported; the raw model keeps
training. The state (averaged ``state_dict`` + ``updates``) goes into ``last.pt`` so a resumed run
continues the same average.
"""

import copy
import math
from typing import Dict

import torch
from torch import nn

#: ultralytics' decay and ramp constants (for runs longer than ``TAU_MAX / TAU_FRACTION`` steps)
DECAY = 0.9999
TAU_MAX = 2000.0
#: the ramp's time constant and the average's horizon as fractions of the run's optimizer steps
TAU_FRACTION = 0.1
HORIZON_FRACTION = 0.1


def ema_tau(total_iters: int, fraction: float = TAU_FRACTION, tau_max: float = TAU_MAX) -> float:
    """The ramp's time constant of a run of ``total_iters`` steps: ``fraction * total_iters``, at most
    ``tau_max`` (ultralytics' 2000), at least 1."""
    return float(min(tau_max, max(1.0, fraction * float(total_iters))))


def ema_decay(total_iters: int, fraction: float = HORIZON_FRACTION, decay_max: float = DECAY) -> float:
    """The decay of a run of ``total_iters`` steps: ``1 - 1 / horizon`` with a horizon of ``fraction``
    of the steps (at least 1 step: decay 0, the raw model), at most ``decay_max`` (0.9999)."""
    horizon = max(1.0, fraction * float(total_iters))
    return float(min(decay_max, 1.0 - 1.0 / horizon))


class ModelEMA:
    """The moving average of a model's ``state_dict``.

    Args:
        model: the training model; a deep copy (eval mode, no gradients) becomes the average.
        decay: the decay the ramp tends to (0.9999).
        tau: the ramp's time constant in updates (:func:`ema_tau`).
        updates: updates already made (resume; the average is then loaded with :meth:`load`).

    Attributes:
        module: the averaged model (evaluate / save this one).
        updates: number of :meth:`update` calls (including those before a resume).
    """

    def __init__(self, model: nn.Module, decay: float = DECAY, tau: float = TAU_MAX,
                 updates: int = 0) -> None:
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = float(decay)
        self.tau = float(tau)
        self.updates = int(updates)

    def decay_at(self, updates: int) -> float:
        """``d(u) = decay * (1 - exp(-u / tau))``."""
        return self.decay * (1.0 - math.exp(-float(updates) / self.tau))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One step of the average towards ``model``'s current weights."""
        self.updates += 1
        d = self.decay_at(self.updates)
        src = model.state_dict()
        for k, v in self.module.state_dict().items():
            if v.dtype.is_floating_point:
                v.mul_(d).add_(src[k].detach(), alpha=1.0 - d)
            else:
                v.copy_(src[k])

    def state_dict(self) -> Dict[str, torch.Tensor]:
        """A CPU copy of the averaged ``state_dict`` (for the checkpoint)."""
        return {k: v.detach().cpu().clone() for k, v in self.module.state_dict().items()}

    def load(self, state: Dict[str, torch.Tensor]) -> None:
        """Load an averaged ``state_dict`` saved by :meth:`state_dict`."""
        self.module.load_state_dict(state)
