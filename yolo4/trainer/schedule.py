"""Learning-rate schedules: darknet's burn-in, then cosine (default), steps, sgdr or constant.

Darknet (``src/network.c`` ``get_current_rate``): for ``batch_num < burn_in`` the rate is
``learning_rate * (batch_num / burn_in) ** power`` (``power=4`` by default), then the cfg's
``policy`` (``steps`` in the yolov4 cfgs, over ``max_batches`` ~ 500k iterations). A fine-tune of a
few epochs has no room for darknet's step points, so after burn-in this trainer decays with a
half cosine from ``lr`` to ``lr * final_ratio`` at the last iteration (ultralytics' ``cos_lr``
shape). :class:`LRSchedule` adds darknet's other policies after the same burn-in (``steps``,
``sgdr``, ``constant``; ``get_current_rate``), built from the cfg's ``[net]`` by :func:`from_cfg`,
which maps darknet's iteration counts onto the run (fractions of ``max_batches``).
"""

import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..errors import Yolo4Error


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


#: the policies :class:`LRSchedule` knows: darknet's ``constant``, ``steps`` and ``sgdr``, and this
#: trainer's ``cosine`` (the default)
POLICIES = ("cosine", "steps", "sgdr", "constant")


@dataclass
class LRSchedule:
    """The learning rate of every optimizer step: darknet's burn-in, then one policy.

    ``batch_num = it + 1`` is darknet's update counter (``src/network.c`` ``get_current_batch``: 1 at
    the first update). For ``it < burn_in`` every policy is in burn-in, ``lr * (batch_num / burn_in)
    ** power`` (``get_current_rate``); afterwards:

    - ``cosine`` (this trainer's default, not a darknet policy): half cosine from ``lr`` at
      ``it = burn_in`` to ``lr * final_ratio`` at the last step (:class:`BurnInCosine`).
    - ``constant`` (darknet ``CONSTANT``): ``lr``.
    - ``steps`` (darknet ``STEPS``): ``lr * prod(scales[i] for steps[i] <= batch_num)``.
    - ``sgdr`` (darknet ``SGDR``): cosine restarts. The cycle containing ``batch_num`` starts at
      ``start`` (``start = 0``, ``cycle = sgdr_cycle``; while ``start + cycle < batch_num``:
      ``start += cycle; cycle *= sgdr_mult``) and the rate is ``lr_min + (lr - lr_min) / 2 *
      (1 + cos(pi * (batch_num - start) / cycle))``.

    ``steps`` and ``sgdr_cycle`` are counted in this run's optimizer steps (:func:`from_cfg` maps the
    cfg's iteration counts onto the run).

    Attributes:
        lr: peak learning rate (per optimizer step, loss averaged per image; see :mod:`.train`).
        total_iters: optimizer steps in the whole run, >= 1.
        burn_in: burn-in steps (0 = none).
        power: burn-in exponent (cfg ``power``, 4).
        policy: one of :data:`POLICIES`.
        final_ratio: ``cosine``: lr at the last step / ``lr``.
        steps: ``steps``: step points in ``batch_num`` units (1-based optimizer steps of this run).
        scales: ``steps``: the factor applied at each step point.
        sgdr_cycle: ``sgdr``: steps in the first cycle, >= 1.
        sgdr_mult: ``sgdr``: growth factor of each next cycle (darknet: an integer, 2).
        lr_min: ``sgdr``: the rate at the end of each cycle.
    """

    lr: float
    total_iters: int
    burn_in: int = 0
    power: float = 4.0
    policy: str = "cosine"
    final_ratio: float = 0.01
    steps: Tuple[int, ...] = ()
    scales: Tuple[float, ...] = ()
    sgdr_cycle: int = 1
    sgdr_mult: int = 2
    lr_min: float = 0.0

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise Yolo4Error(f"--policy must be one of {', '.join(POLICIES)}, got {self.policy!r}")
        self.steps = tuple(int(s) for s in self.steps)
        self.scales = tuple(float(s) for s in self.scales)
        if len(self.steps) != len(self.scales):
            raise Yolo4Error(f"policy steps needs as many scales as steps, got {len(self.steps)} steps "
                             f"and {len(self.scales)} scales")
        self.sgdr_cycle = max(1, int(self.sgdr_cycle))
        self.sgdr_mult = max(1, int(self.sgdr_mult))

    def __call__(self, it: int) -> float:
        """Learning rate of optimizer step ``it`` (0-based; the first step uses ``it = 0``)."""
        batch_num = it + 1
        if self.burn_in > 0 and it < self.burn_in:
            return self.lr * (batch_num / self.burn_in) ** self.power
        if self.policy == "cosine":
            return BurnInCosine(self.lr, self.total_iters, self.burn_in, self.power, self.final_ratio)(it)
        if self.policy == "constant":
            return self.lr
        if self.policy == "steps":
            rate = self.lr
            for step, scale in zip(self.steps, self.scales):
                if step > batch_num:
                    break
                rate *= scale
            return rate
        start, cycle = 0, self.sgdr_cycle                       # sgdr
        while start + cycle < batch_num:
            start += cycle
            cycle *= self.sgdr_mult
        return self.lr_min + 0.5 * (self.lr - self.lr_min) * (1 + math.cos(math.pi * (batch_num - start) / cycle))

    def to_args(self) -> Dict[str, Any]:
        """The schedule as plain ``train_args`` entries (read back by :meth:`from_args`)."""
        return {"policy": self.policy, "total_iters": int(self.total_iters), "burn_in": int(self.burn_in),
                "power": float(self.power), "final_ratio": float(self.final_ratio),
                "steps": list(self.steps), "scales": list(self.scales), "sgdr_cycle": int(self.sgdr_cycle),
                "sgdr_mult": int(self.sgdr_mult), "lr_min": float(self.lr_min)}

    @classmethod
    def from_args(cls, lr: float, args: Dict[str, Any]) -> "LRSchedule":
        """The schedule a checkpoint's ``train_args`` stored (one written before ``policy`` existed:
        burn-in then cosine, as it ran)."""
        return cls(float(lr), int(args["total_iters"]), int(args["burn_in"]), power=float(args["power"]),
                   policy=str(args.get("policy", "cosine")), final_ratio=float(args["final_ratio"]),
                   steps=tuple(args.get("steps", ())), scales=tuple(args.get("scales", ())),
                   sgdr_cycle=int(args.get("sgdr_cycle", 1)), sgdr_mult=int(args.get("sgdr_mult", 2)),
                   lr_min=float(args.get("lr_min", 0.0)))

    def describe(self) -> str:
        """One phrase for the run's log line: ``burn-in 6 steps, cosine to 1.2e-06``."""
        head = f"burn-in {self.burn_in} steps, "
        if self.policy == "cosine":
            return head + f"cosine to {self.lr * self.final_ratio:g}"
        if self.policy == "steps":
            points = ", ".join(f"x{s:g} at step {p}" for p, s in zip(self.steps, self.scales))
            return head + f"steps ({points or 'none'})"
        if self.policy == "sgdr":
            return head + f"sgdr cycles of {self.sgdr_cycle} steps x{self.sgdr_mult}, down to {self.lr_min:g}"
        return head + "constant"


def _cfg_list(value: Any, kind: Callable[[str], Any]) -> List[Any]:
    """A cfg list value (``400000,450000``) as a list (a number alone: a list of one)."""
    if isinstance(value, (list, tuple)):
        return [kind(str(v).strip()) for v in value]
    return [kind(v.strip()) for v in str(value).split(",") if v.strip()]


def from_cfg(net: Dict[str, Any], policy: str, lr: float, total_iters: int,
             burn_in: Optional[int] = None) -> LRSchedule:
    """The schedule of a run of ``total_iters`` optimizer steps at peak ``lr`` from a cfg's ``[net]``.

    Darknet counts ``steps``, ``sgdr_cycle`` and ``max_batches`` in iterations of its own (long) run
    (``src/parser.c`` ``parse_net_options``: ``steps=400000,450000`` of ``max_batches=500500``). The
    rule here: each is a fraction of ``max_batches`` applied to this run's ``total_iters`` (rounded,
    at least 1): the yolov4 cfgs' steps at 80 % and 90 % of ``max_batches`` fall at 80 % and 90 % of
    this run, AlexeyAB's own advice for custom cfgs. ``learning_rate_min`` (default 0.00001) keeps
    its ratio to the cfg's ``learning_rate`` (``lr_min = lr * learning_rate_min / learning_rate``),
    as ``lr`` is the cfg's rate rescaled. ``burn_in`` (None: the cfg's, clipped by
    :func:`clip_burn_in`) and ``power`` (default 4) apply to every policy.

    Args:
        net: the cfg's ``[net]`` options (``model.net``; values may be strings).
        policy: one of :data:`POLICIES` (the caller's choice, not necessarily the cfg's ``policy``).
        lr: peak learning rate of this run.
        total_iters: optimizer steps of this run.
        burn_in: burn-in steps, None = the cfg's clipped.

    Raises:
        Yolo4Error: ``steps`` without ``steps``/``scales``/``max_batches`` in the cfg, or lists of
            different lengths.
    """
    total_iters = max(1, int(total_iters))
    if burn_in is None:
        burn_in = clip_burn_in(int(float(net.get("burn_in", 0) or 0)), total_iters)
    power = float(net.get("power", 4.0) or 4.0)
    max_batches = int(float(net.get("max_batches", 0) or 0))

    def scaled(n: float) -> int:
        return max(1, int(round(float(n) / max_batches * total_iters)))

    kw: Dict[str, Any] = {}
    if policy == "steps":
        if net.get("steps") in (None, "") or net.get("scales") in (None, "") or max_batches <= 0:
            raise Yolo4Error("policy steps needs the cfg's [net] steps, scales and max_batches")
        steps, scales = _cfg_list(net["steps"], float), _cfg_list(net["scales"], float)
        if len(steps) != len(scales):
            raise Yolo4Error(f"the cfg's [net] has {len(steps)} steps and {len(scales)} scales")
        kw = {"steps": tuple(scaled(s) for s in steps), "scales": tuple(scales)}
    elif policy == "sgdr":
        cycle = float(net.get("sgdr_cycle", 0) or 0) or max_batches
        base = float(net.get("learning_rate", 0.001) or 0.001)
        kw = {"sgdr_cycle": scaled(cycle) if max_batches > 0 and cycle > 0 else total_iters,
              "sgdr_mult": int(float(net.get("sgdr_mult", 2) or 2)),
              "lr_min": lr * float(net.get("learning_rate_min", 0.00001)) / base}
    return LRSchedule(float(lr), total_iters, int(burn_in), power=power, policy=policy, **kw)
