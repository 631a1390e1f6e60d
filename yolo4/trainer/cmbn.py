"""Cross mini-Batch Normalization (CmBN), the YOLOv4 paper's section 3.3 (figure 4).

With ``subdivisions > 1`` one batch is forwarded as several mini-batches before a single weight
update. Plain BN normalises each mini-batch with its own statistics; CmBN normalises mini-batch
``k`` with the statistics *accumulated over mini-batches 1..k of the same batch*, so the last
mini-batch sees the whole batch's statistics; the accumulation restarts with every batch.

Darknet (AlexeyAB/darknet): ``[convolutional] cbn=1`` (``src/parser.c``: ``batch_normalize = 2``),
``src/batchnorm_layer.c`` ``forward_batchnorm_layer_gpu`` -> ``src/blas_kernels.cu``
``fast_v_cbn_kernel``: ``m_avg = m/k + (1 - 1/k) m_avg``, ``v_avg`` likewise for ``E[x^2]``,
``variance = max(0, v_avg - m_avg^2)``, ``k = current_subdivision + 1``; the rolling statistics
take the accumulated ones at every mini-batch (momentum .01).

Here (:class:`CrossMiniBatchNorm`): true CmBN, not an approximation. Per channel the running
``(count, mean, M2)`` of the batch's earlier mini-batches (detached: their graphs are gone after their
backward) is merged with the current mini-batch's (Chan's parallel update, exact and stable where
``E[x^2] - m^2`` cancels), weighted by element count (darknet's ``1/k`` weights; the same for equal
mini-batches). Normalisation uses the biased variance ``M2 / count`` and ``eps`` of the module
(darknet's 1e-5); the gradient flows through the current mini-batch's share of the statistics.
Running statistics are updated with the accumulated mean and unbiased variance at every mini-batch,
as darknet does. Modules in eval mode (frozen BN, validation) are untouched.
"""

from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

__all__ = ["CrossMiniBatchNorm", "accumulated_stats"]

_State = Tuple[float, torch.Tensor, torch.Tensor]     # (count, mean [C], M2 [C]), detached


def accumulated_stats(x: torch.Tensor, prev: Optional[_State]) -> Tuple[torch.Tensor, torch.Tensor, _State]:
    """Merge the statistics of ``x`` into those of the earlier mini-batches.

    Args:
        x: ``[N, C, H, W]`` batch-norm input of the current mini-batch.
        prev: ``(count, mean [C], M2 [C])`` of mini-batches ``1..k-1`` (None for ``k = 1``).

    Returns:
        ``(mean [C], var [C], state)``: mean and biased variance over mini-batches ``1..k`` (with a
        gradient through ``x``), and the detached state to pass on to mini-batch ``k + 1``.
    """
    dims = (0, 2, 3)
    n_b = float(x.shape[0] * x.shape[2] * x.shape[3])
    mean_b = x.mean(dims)
    m2_b = x.var(dims, unbiased=False) * n_b
    if prev is None:
        mean, m2, n = mean_b, m2_b, n_b
    else:
        n_a, mean_a, m2_a = prev
        n = n_a + n_b
        delta = mean_b - mean_a
        mean = mean_a + delta * (n_b / n)
        m2 = m2_a + m2_b + delta.square() * (n_a * n_b / n)
    return mean, m2 / n, (n, mean.detach(), m2.detach())


class CrossMiniBatchNorm:
    """Context manager: inside it every ``nn.BatchNorm2d`` of ``model`` in train mode normalises with
    the statistics accumulated over its calls so far (one call = one mini-batch of the batch).

    Enter once per batch (the accumulation restarts); nothing is left on the modules afterwards.
    ``nn.SyncBatchNorm`` is not a ``BatchNorm2d`` and is left as it is.

    Example::

        with CrossMiniBatchNorm(model):
            for x in mini_batches:          # k = 1, 2, ...
                loss_fn(model(x)).backward()
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self.state: Dict[nn.Module, Optional[_State]] = {}
        self._patched: List[nn.Module] = []

    def __enter__(self) -> "CrossMiniBatchNorm":
        for m in self.model.modules():
            if isinstance(m, nn.BatchNorm2d) and "forward" not in m.__dict__:
                self.state[m] = None
                m.forward = self._forward_of(m)
                self._patched.append(m)
        return self

    def __exit__(self, *exc) -> None:
        for m in self._patched:
            del m.forward
        self._patched.clear()
        self.state.clear()

    def _forward_of(self, m: nn.BatchNorm2d):
        plain = type(m).forward

        def forward(x: torch.Tensor) -> torch.Tensor:
            if not m.training:
                return plain(m, x)
            mean, var, self.state[m] = accumulated_stats(x, self.state[m])
            if m.track_running_stats and m.running_mean is not None:
                with torch.no_grad():
                    m.num_batches_tracked.add_(1)
                    f = (1.0 / float(m.num_batches_tracked)) if m.momentum is None else m.momentum
                    n = self.state[m][0]
                    m.running_mean.mul_(1 - f).add_(mean.detach(), alpha=f)
                    m.running_var.mul_(1 - f).add_(var.detach() * (n / max(n - 1.0, 1.0)), alpha=f)
            y = (x - mean[None, :, None, None]) * torch.rsqrt(var + m.eps)[None, :, None, None]
            if m.affine:
                y = y * m.weight[None, :, None, None] + m.bias[None, :, None, None]
            return y

        return forward

