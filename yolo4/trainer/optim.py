"""The optimizer of a run: darknet's SGD (momentum, weight decay on conv weights), Nesterov, Adam, AdamW.

Darknet (``src/convolutional_layer.c`` ``update_convolutional_layer``) updates each conv layer with
``weight_updates += -decay * batch * weights; weights += learning_rate / batch * weight_updates;
weight_updates *= momentum`` (biases and batch-norm scales: the same without the decay term). With
the gradient of the per-image mean loss that is ``torch.optim.SGD(momentum=momentum,
weight_decay=decay, dampening=0)`` on the conv weights and ``weight_decay=0`` elsewhere: the groups of
:func:`yolo4.trainer.train.param_groups`. Options beyond darknet's SGD:

- ``nesterov=True``: Nesterov momentum (``torch.optim.SGD(nesterov=True)``; darknet has none).
- ``adam``: ``torch.optim.Adam`` with darknet's ``adam=1`` constants from the cfg's ``[net]`` (``B1``
  0.9, ``B2`` 0.999, ``eps`` 0.000001; ``src/parser.c`` ``parse_net_options``); the decay is an L2
  term added to the gradient of the conv weights only, as darknet's ``adam_update_gpu`` does.
- ``adamw``: ``torch.optim.AdamW``, the same constants, the decay decoupled (``w -= lr * decay * w``),
  conv weights only.

The cfg's ``adam=1`` selects ``adam`` when no optimizer is given (:func:`default_optimizer`).
"""

from typing import Any, Dict, List, Mapping, Optional

import torch

from ..errors import Yolo4Error

#: the optimizers :func:`build_optimizer` makes
OPTIMIZERS = ("sgd", "adam", "adamw")


def default_optimizer(net: Mapping[str, Any]) -> str:
    """``adam`` when the cfg's ``[net]`` says ``adam=1`` (darknet's switch), else ``sgd``."""
    return "adam" if int(float(net.get("adam", 0) or 0)) else "sgd"


def build_optimizer(groups: List[Dict[str, Any]], name: str, lr: float, momentum: float = 0.9,
                    nesterov: bool = False, net: Optional[Mapping[str, Any]] = None) -> torch.optim.Optimizer:
    """A torch optimizer over parameter groups that carry their own ``weight_decay``.

    Args:
        groups: parameter groups (:func:`yolo4.trainer.train.param_groups`: conv weights with the cfg's
            ``decay``, biases and batch norm with 0; extra keys such as ``lr_scale`` are kept).
        name: one of :data:`OPTIMIZERS`.
        lr: initial learning rate (the trainer sets every group's lr before each step).
        momentum: SGD momentum (cfg ``momentum``, 0.9); unused by Adam/AdamW.
        nesterov: SGD only: Nesterov momentum (needs ``momentum > 0``).
        net: the cfg's ``[net]`` options, for Adam's ``B1``, ``B2``, ``eps`` (None: darknet's defaults).

    Raises:
        Yolo4Error: an unknown ``name``, ``nesterov`` with an Adam optimizer or without momentum.
    """
    if name not in OPTIMIZERS:
        raise Yolo4Error(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}")
    if name == "sgd":
        if nesterov and momentum <= 0:
            raise Yolo4Error("--nesterov needs momentum > 0 (the cfg's [net] momentum)")
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=bool(nesterov))
    if nesterov:
        raise Yolo4Error(f"--nesterov applies to --optimizer sgd, not {name}")
    net = net or {}
    betas = (float(net.get("B1", 0.9)), float(net.get("B2", 0.999)))
    eps = float(net.get("eps", 0.000001))
    cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
    return cls(groups, lr=lr, betas=betas, eps=eps)
