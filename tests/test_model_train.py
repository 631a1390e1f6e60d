"""Training-mode behaviour of the module: gradients, darknet stopbackward."""

import torch

from yolo4.model import Darknet

CFG = """[net]
width=64
height=64

[convolutional]
batch_normalize=1
filters=8
size=3
stride=2
pad=1
activation=mish

[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky
stopbackward=100

[shortcut]
from=-2
activation=linear

[convolutional]
size=1
stride=1
pad=1
filters=18
activation=linear

[yolo]
mask=0,1,2
anchors=10,14,23,27,37,58
classes=1
num=3
"""


def _grads(model, iteration):
    model.train()
    model.zero_grad()
    model.iteration = iteration
    heads = model(torch.rand(2, 3, 64, 64), raw=True)
    sum(h.square().mean() for h in heads).backward()
    return [m.conv.weight.grad for m in model.conv_layers]


def test_gradients_and_stopbackward():
    torch.manual_seed(0)
    model = Darknet(text=CFG)
    g = _grads(model, iteration=0)
    # stopbackward=100 on layer 1: while iteration < 100 nothing up to layer 1 learns through it;
    # layer 0 still gets gradients through the shortcut (from=-2 reads layer 0 directly)
    assert g[1] is None or g[1].abs().sum() == 0
    assert g[0] is not None and g[0].abs().sum() > 0 and g[2].abs().sum() > 0
    g = _grads(model, iteration=100)
    assert all(t is not None and t.abs().sum() > 0 for t in g)
    # eval mode ignores stopbackward and the batch statistics
    model.eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        a, b = model(x)[1], model(x)[1]
    assert torch.equal(a, b)
