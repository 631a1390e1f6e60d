"""Learning-rate schedule: darknet's burn-in, then a cosine decay.

Darknet (``src/network.c`` ``get_current_rate``): for ``batch_num < burn_in`` the rate is
``learning_rate * (batch_num / burn_in) ** power`` (``power=4`` by default), then the cfg's
``policy`` (``steps`` in the yolov4 cfgs, over ``max_batches`` ~ 500k iterations). A fine-tune of a
few epochs has no room for darknet's step points, so after burn-in this trainer decays with a
half cosine from ``lr`` to ``lr * final_ratio`` at the last iteration (ultralytics' ``cos_lr``
shape; the step policy may be added later).
"""

import math
from dataclasses import dataclass


@dataclass
class BurnInCosine:
    """lr(iteration) = burn-in ``lr * (it / burn_in) ** power``, then cosine to ``lr * final_ratio``.

    Attributes:
        lr: peak learning rate (per optimizer step, loss averaged per image; see :mod:`.loss`).
        total_iters: optimizer steps in the whole run (epochs x steps per epoch), >= 1.
        burn_in: steps of burn-in (0 = none); :func:`clip_burn_in` shortens darknet's 1000.
        power: burn-in exponent (cfg ``power``, 4).
        final_ratio: lr at the last step / ``lr`` (0.01).
    """

    lr: float
    total_iters: int
    burn_in: int = 0
    power: float = 4.0
    final_ratio: float = 0.01

    def __call__(self, it: int) -> float:
        """Learning rate of optimizer step ``it`` (0-based; the first step uses ``it = 0``)."""
        if self.burn_in > 0 and it < self.burn_in:
            # darknet counts from batch_num = 1 at the first update; (it + 1) avoids a zero first step
            return self.lr * ((it + 1) / self.burn_in) ** self.power
        span = max(1, self.total_iters - 1 - self.burn_in)
        frac = min(1.0, max(0.0, (it - self.burn_in) / span))
        return self.lr * (self.final_ratio + (1 - self.final_ratio) * 0.5 * (1 + math.cos(math.pi * frac)))


def clip_burn_in(cfg_burn_in: int, total_iters: int, fraction: float = 0.1) -> int:
    """Darknet's ``burn_in`` (1000 steps in the yolov4 cfgs), at most ``fraction`` of a short run."""
    return int(max(0, min(int(cfg_burn_in), round(fraction * total_iters))))
