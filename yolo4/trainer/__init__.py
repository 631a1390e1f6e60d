"""Training: fine-tune a darknet cfg (+ pretrained .weights) on a dataset (torch).

Modules, one concern each:

- :mod:`.augment`     numpy/cv2 augmentation of one image + its boxes (flip, HSV, jitter crop, mosaic,
  CutMix, MixUp, blur)
- :mod:`.dataset`     ``torch.utils.data.Dataset`` over ``ImageRecord`` s and the batch collate
- :mod:`.assign`      darknet's truth -> (layer, anchor, cell) assignment (``forward_yolo_layer``)
- :mod:`.loss`        CIoU/DIoU/GIoU/IoU/MSE box loss, objectness and class BCE (darknet semantics)
- :mod:`.box_grad`    darknet's hand-derived box deltas (``dx_box_iou``) that the box loss follows
- :mod:`.schedule`    learning rate: darknet burn-in, then cosine (default), steps, sgdr or constant
- :mod:`.optim`       SGD (momentum, Nesterov), Adam, AdamW; weight decay on conv weights only
- :mod:`.ema`         exponential moving average of the weights (what is validated and saved)
- :mod:`.cmbn`        Cross mini-Batch Normalization (paper 3.3)
- :mod:`.sat`         Self-Adversarial Training (paper 3.3, ``adversarial_lr``)
- :mod:`.multiscale`  random training shapes (``random=1``)
- :mod:`.distributed` DDP under ``torchrun`` (``--devices``)
- :mod:`.hyp`         hyperparameters by darknet key: ``--hyp`` YAML, ``--set``, the cfg
- :mod:`.evolve`      hyperparameter evolution (``--evolve N``)
- :mod:`.validate`    per-epoch validation through the runtime (the deployment path)
- :mod:`.plots`       TensorBoard scalars and PNG plots beside ``results.csv``
- :mod:`.preview`     ``--preview N``: augmented batches as JPEGs with their boxes
- :mod:`.checkpoint`  atomic ``last.pt`` / ``best.pt`` in the spec's checkpoint format
- :mod:`.train`       :func:`train`, the loop, per-epoch evaluation, results.csv, darknet export

Import :func:`yolo4.trainer.train.train` (this package's ``__init__`` stays light).
"""

__all__ = ["train"]


def train(*args, **kwargs):
    """Shortcut for :func:`yolo4.trainer.train.train` (imported lazily)."""
    from .train import train as _train

    return _train(*args, **kwargs)
