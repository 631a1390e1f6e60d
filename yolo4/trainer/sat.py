"""Self-Adversarial Training (SAT), the YOLOv4 paper's section 3.3 and darknet's ``[net] adversarial_lr``.

Two passes per mini-batch: the first moves the *image* (not the weights) along the gradient of the
loss, the second trains on the moved image with the original labels.

Darknet (AlexeyAB/darknet, ``src/parser.c`` ``parse_net_options``: ``adversarial_lr``, default 0 = off;
``src/network_kernels.cu`` ``train_network_datum_gpu`` / ``backward_network_gpu``):

* per mini-batch (each of the ``subdivisions``), with probability 1/2 (``rand_int(0, 1) == 1``) and
  only once the iteration is past ``burn_in``;
* step size ``adversarial_lr * iteration / max_batches`` (grows linearly over the run);
* the step is the network's input delta added to the input (``axpy(lr, delta, input)``), then the
  image is clipped to ``[0, 1]`` (``constrain_min_max``); weights and batch-norm statistics are not
  touched by that pass (``net.adversarial``: BN normalises with its rolling statistics, no weight
  updates).

Here (:func:`adversarial_images`) the step is gradient *ascent* on :class:`.loss.YoloLoss` with the
mini-batch's own labels, ``x + lr * d(sum over images of the loss)/dx`` (the per-image gradient, not
divided by the batch size, like darknet's delta), then clipped to ``[0, 1]``. Darknet's first pass
instead runs with empty truths and descends the "no object here" loss (its ``yolo_layer.c``
``state.net.adversarial`` branch pushes objectness and confident classes towards 0): an attack that
hides the objects. Ascent on the labelled loss is the issue's formulation; both raise the labelled loss.
"""

import random
from typing import Callable, Dict, Optional

import torch
from torch import nn

__all__ = ["adversarial_images", "adversarial_step_size", "sat_step_size", "perturb_fn"]


def adversarial_step_size(adversarial_lr: float, iteration: int, total_iters: int) -> float:
    """Darknet's ``adversarial_lr * iteration / max_batches`` (``train_network_datum_gpu``); ``total_iters``
    (the run's optimizer steps) plays ``max_batches``."""
    return float(adversarial_lr) * float(iteration) / float(max(1, int(total_iters)))


def sat_step_size(adversarial_lr: float, iteration: int, total_iters: int, burn_in: int = 0, seed: int = 0,
                  minibatch: int = 0) -> float:
    """The SAT step of one mini-batch: darknet's coin flip (probability 1/2) once past ``burn_in``.

    The coin is ``random.Random`` seeded with ``(seed, iteration, minibatch)``: the same in a resumed
    run, and the global torch / python RNGs are not drawn from (data order and augmentation are the
    same with and without SAT).

    Args:
        adversarial_lr: the cfg's ``[net] adversarial_lr``.
        iteration: the optimizer step (0-based, darknet's ``get_current_iteration``).
        total_iters: optimizer steps in the run (darknet's ``max_batches``).
        burn_in: burn-in steps; SAT only for ``iteration > burn_in``.
        seed: the run's seed.
        minibatch: the mini-batch's index in the batch (``subdivisions``).

    Returns:
        0.0 (skip: off, before burn-in, or the coin says no) or :func:`adversarial_step_size`.
    """
    if adversarial_lr <= 0 or iteration <= burn_in:
        return 0.0
    if random.Random(f"sat:{seed}:{iteration}:{minibatch}").randint(0, 1) != 1:
        return 0.0
    return adversarial_step_size(adversarial_lr, iteration, total_iters)


def adversarial_images(model: nn.Module, loss_fn: Callable, images: torch.Tensor, targets: torch.Tensor,
                       lr: float) -> torch.Tensor:
    """The SAT first pass: one gradient-ascent step of the loss on the images, clipped to ``[0, 1]``.

    Batch norm runs on its running statistics during the pass and leaves them unchanged (darknet's
    ``net.adversarial``: ``forward_batchnorm_layer_gpu`` normalises with ``rolling_mean/variance``);
    the parameters' ``.grad`` are untouched (the gradient is taken with respect to the images only) and
    every module's ``training`` flag is restored afterwards.

    Args:
        model: the Darknet module (``model(x, raw=True)``); not a DDP wrapper (no parameter gradients
            are produced, so nothing to all-reduce).
        loss_fn: ``(raw, targets) -> (loss, items)``, ``loss`` the per-image mean (:class:`.loss.YoloLoss`).
        images: ``[B, 3, H, W]`` float 0..1.
        targets: ``[K, 6]`` rows ``(image_index, class, cx, cy, w, h)``.
        lr: the step (:func:`adversarial_step_size`); <= 0 returns ``images`` as they are.

    Returns:
        ``[B, 3, H, W]`` float 0..1, detached: ``clamp(images + lr * dL_sum/dimages, 0, 1)`` with
        ``L_sum = B * loss`` (the per-image loss gradient, darknet's input delta). A non-finite
        gradient returns the images unchanged.
    """
    if lr <= 0:
        return images
    modes: Dict[nn.Module, bool] = {m: m.training for m in model.modules()}
    try:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
        x = images.detach().float().clone().requires_grad_(True)
        with torch.autocast(device_type=x.device.type, enabled=False):
            raw = model(x, raw=True)
            loss, _ = loss_fn([r.float() for r in raw], targets)
        (grad,) = torch.autograd.grad(loss * images.shape[0], x)
    finally:
        for m, mode in modes.items():
            m.training = mode
    if not bool(torch.isfinite(grad).all()):
        return images
    return (images.detach() + float(lr) * grad.to(images.dtype)).clamp_(0.0, 1.0)


def perturb_fn(model: nn.Module, loss_fn: Callable, adversarial_lr: float, iteration: int, total_iters: int,
               burn_in: int = 0, seed: int = 0) -> Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
    """The per-mini-batch hook of :func:`.train.accumulate_gradients` for one step: ``(x, t) -> x'``
    (one :func:`sat_step_size` coin per mini-batch, in call order), or None when ``adversarial_lr <= 0``."""
    if adversarial_lr <= 0:
        return None
    calls = [0]

    def perturb(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        k = calls[0]
        calls[0] += 1
        return adversarial_images(model, loss_fn, x, t,
                                  sat_step_size(adversarial_lr, iteration, total_iters, burn_in, seed, k))

    return perturb
