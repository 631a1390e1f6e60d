"""Cross mini-Batch Normalization (yolo4.trainer.cmbn): mini-batch k normalises with the statistics of
mini-batches 1..k of its batch (hand-checked on a tiny tensor), restarts with each batch, leaves eval-mode
BN and the modules themselves untouched, and is off by default."""

import torch
from torch import nn

from yolo4.trainer.cmbn import CrossMiniBatchNorm, accumulated_stats
from yolo4.trainer.train import accumulate_gradients

torch.set_num_threads(2)


def _bn():
    bn = nn.BatchNorm2d(2, eps=1e-5, momentum=0.01)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([2.0, 0.5]))
        bn.bias.copy_(torch.tensor([0.1, -1.0]))
    return bn


def _minibatches():
    g = torch.Generator().manual_seed(0)
    return [torch.randn(2, 2, 3, 3, generator=g) * (k + 1) + k for k in range(3)]


def test_statistics_are_those_of_the_accumulated_mini_batches():
    bn, xs = _bn(), _minibatches()
    running_mean, running_var = bn.running_mean.clone(), bn.running_var.clone()
    with CrossMiniBatchNorm(bn):
        for k, x in enumerate(xs, 1):
            y = bn(x)
            seen = torch.cat(xs[:k])                                     # mini-batches 1..k
            mean = seen.mean((0, 2, 3))
            var = ((seen - mean[None, :, None, None]) ** 2).mean((0, 2, 3))   # biased, as in BN
            want = (x - mean[None, :, None, None]) / torch.sqrt(var + 1e-5)[None, :, None, None]
            want = want * bn.weight[None, :, None, None] + bn.bias[None, :, None, None]
            assert torch.allclose(y, want, atol=1e-5), k
            n = seen.numel() / 2
            running_mean = 0.99 * running_mean + 0.01 * mean            # darknet: rolling takes the cbn stats
            running_var = 0.99 * running_var + 0.01 * var * n / (n - 1)
            assert torch.allclose(bn.running_mean, running_mean, atol=1e-6)
            assert torch.allclose(bn.running_var, running_var, atol=1e-5)
    assert "forward" not in bn.__dict__                                  # nothing left on the module
    # k = 1 is plain BN; a new context restarts the accumulation
    with CrossMiniBatchNorm(bn):
        assert torch.allclose(bn(xs[2]), nn.functional.batch_norm(xs[2], None, None, bn.weight, bn.bias,
                                                                  True, 0.0, 1e-5), atol=1e-5)


def test_hand_checked_numbers():
    # one channel, mini-batches {0, 2} and {4, 6}: k=1 mean 1 var 1; k=2 mean 3 var 5
    a = torch.tensor([0.0, 2.0]).view(2, 1, 1, 1)
    b = torch.tensor([4.0, 6.0]).view(2, 1, 1, 1)
    m1, v1, s = accumulated_stats(a, None)
    m2, v2, _ = accumulated_stats(b, s)
    assert (float(m1), float(v1), float(m2), float(v2)) == (1.0, 1.0, 3.0, 5.0)


def test_gradient_flows_through_the_current_mini_batch():
    bn, xs = _bn(), _minibatches()
    x = xs[1].clone().requires_grad_(True)
    with CrossMiniBatchNorm(bn):
        bn(xs[0])
        y = bn(x)
    (y * torch.arange(y.numel(), dtype=y.dtype).view_as(y)).sum().backward()
    prev = accumulated_stats(xs[0], None)[2]

    def f(z):
        mean, var, _ = accumulated_stats(z, prev)
        out = (z - mean[None, :, None, None]) / torch.sqrt(var + 1e-5)[None, :, None, None]
        out = out * bn.weight[None, :, None, None] + bn.bias[None, :, None, None]
        return (out * torch.arange(out.numel(), dtype=out.dtype).view_as(out)).sum()

    want = torch.autograd.functional.jacobian(f, xs[1])
    assert torch.allclose(x.grad, want, atol=1e-4)


def test_eval_mode_bn_is_untouched():
    bn, xs = _bn(), _minibatches()
    bn.eval()
    with CrossMiniBatchNorm(bn):
        y = bn(xs[1])
    assert torch.equal(y, _bn().eval()(xs[1]))


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1))


class _Raw(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = _net()

    def forward(self, x, raw=False):
        return [self.net(x)]


def _loss(raw, t):
    loss = raw[0].square().mean()
    return loss, {"box": 0.0, "obj": 0.0, "cls": float(loss.detach()), "loss": float(loss.detach())}


def _run(**kw):
    m = _Raw()
    m.train()
    x = torch.rand(8, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    accumulate_gradients(m, _loss, x, torch.zeros(0, 6), subdivisions=4, **kw)
    return m


def test_off_by_default_is_bit_identical_and_on_changes_the_step():
    plain, default, on = _run(), _run(cmbn=False), _run(cmbn=True)
    for (k, a), b in zip(plain.named_parameters(), default.parameters()):
        assert torch.equal(a.grad, b.grad), k
    assert torch.equal(plain.net[1].running_mean, default.net[1].running_mean)
    assert not torch.allclose(plain.net[0].weight.grad, on.net[0].weight.grad)
    assert "forward" not in on.net[1].__dict__
