"""Training: fine-tune a darknet cfg (+ pretrained .weights) on a dataset (torch).

Modules, one concern each, so the full YOLOv4 recipe (mosaic, CutMix, SAT, DropBlock, CmBN,
DDP) can slot in later without reshaping the loop:

- :mod:`.augment`    numpy/cv2 augmentation of one image + its boxes (flip, HSV, darknet jitter crop)
- :mod:`.dataset`    ``torch.utils.data.Dataset`` over ``ImageRecord`` s and the batch collate
- :mod:`.assign`     darknet's truth -> (layer, anchor, cell) assignment (``forward_yolo_layer``)
- :mod:`.loss`       CIoU/DIoU/GIoU/IoU/MSE box loss, objectness and class BCE (darknet semantics)
- :mod:`.schedule`   learning rate: darknet burn-in, then cosine (default), steps, sgdr or constant
- :mod:`.optim`      SGD (momentum, Nesterov), Adam, AdamW; weight decay on conv weights only
- :mod:`.ema`        exponential moving average of the weights (what is validated and saved)
- :mod:`.checkpoint` atomic ``last.pt`` / ``best.pt`` in the spec's checkpoint format
- :mod:`.train`      :func:`train`, the loop, per-epoch evaluation, results.csv, darknet export

Import :func:`yolo4.trainer.train.train` (this package's ``__init__`` stays light).
"""

__all__ = ["train"]


def train(*args, **kwargs):
    """Shortcut for :func:`yolo4.trainer.train.train` (imported lazily)."""
    from .train import train as _train

    return _train(*args, **kwargs)
