"""The darknet cfg vocabulary: section names, and the keys darknet reads for each section type.

:data:`KNOWN_KEYS` lists, per canonical section type, every key AlexeyAB darknet's ``src/parser.c``
reads with ``option_find*`` (training keys included): ``parse_net_options`` for ``[net]``,
``parse_convolutional``, ``parse_route``, ``parse_shortcut``, ``parse_maxpool``, ``parse_upsample``,
``parse_yolo``, ``parse_dropout``, ``parse_sam``, ``parse_scale_channels``, ``parse_avgpool``,
``parse_local_avgpool``, ``parse_reorg`` (``[reorg3d]``), ``parse_contrastive``, plus the keys ``parse_network_cfg_custom`` reads for every layer
(:data:`COMMON_LAYER_KEYS`), plus the few yolo4 extension keys its trainer reads (``[net] shear``,
marked in the table). Darknet prints ``Unused field: 'key = value'`` (``option_unused``) for
any other key of a layer section; here it is a :class:`yolo4.errors.CfgWarning` naming the file and
line, with the closest known key suggested (``fliters`` -> ``filters``).
"""

import difflib
from typing import Dict, FrozenSet, Optional

__all__ = ["SECTION_ALIASES", "KNOWN_KEYS", "COMMON_LAYER_KEYS", "suggest_key"]

#: darknet section names (and their aliases, darknet ``string_to_layer_type``) -> canonical name.
SECTION_ALIASES = {
    "net": "net", "network": "net",
    "convolutional": "convolutional", "conv": "convolutional",
    "route": "route",
    "shortcut": "shortcut",
    "maxpool": "maxpool", "max": "maxpool",
    "upsample": "upsample",
    "yolo": "yolo",
    "dropout": "dropout",
    "sam": "sam",
    "scale_channels": "scale_channels",
    "avgpool": "avgpool", "avg": "avgpool",
    "local_avgpool": "local_avgpool", "local_avg": "local_avgpool",
    "reorg3d": "reorg3d",
    "contrastive": "contrastive",
}

#: keys darknet reads for every layer section (``parse_network_cfg_custom`` after the layer parser)
COMMON_LAYER_KEYS = frozenset((
    "clip", "onlyforward", "dont_update", "burnin_update", "stopbackward", "train_only_bn", "dontload",
    "dontloadscales", "learning_rate",
))

_NET = (  # parse_net_options (+ show_receptive_field, read from the [net] options by the caller)
    "max_batches", "batch", "learning_rate", "learning_rate_min", "sgdr_cycle", "sgdr_mult", "momentum",
    "decay", "subdivisions", "time_steps", "track", "augment_speed", "sequential_subdivisions",
    "try_fix_nan", "weights_reject_freq", "equidistant_point", "badlabels_rejection_percentage",
    "num_sigmas_reject_badlabels", "ema_alpha", "use_cuda_graph", "loss_scale", "dynamic_minibatch",
    "optimized_memory", "workspace_size_limit_MB", "adam", "B1", "B2", "eps", "height", "width",
    "channels", "inputs", "max_crop", "min_crop", "flip", "blur", "gaussian_noise", "mixup", "cutmix",
    "mosaic", "letter_box", "mosaic_bound", "contrastive", "contrastive_jit_flip", "contrastive_color",
    "unsupervised", "label_smooth_eps", "resize_step", "attention", "adversarial_lr", "max_chart_loss",
    "angle", "aspect", "saturation", "exposure", "hue", "power", "policy", "burn_in", "step", "scale",
    "steps", "scales", "seq_scales", "gamma", "show_receptive_field",
    # yolo4 extensions (darknet does not read them; yolo4's trainer does):
    "shear",  # random shear in degrees (ultralytics' name), yolo4.trainer.augment
)
_CONV = (  # parse_convolutional
    "filters", "groups", "size", "stride_x", "stride_y", "stride", "dilation", "antialiasing", "pad",
    "padding", "activation", "assisted_excitation", "share_index", "batch_normalize", "cbn", "binary",
    "xnor", "bin_output", "sway", "rotate", "stretch", "stretch_sway", "flipped", "dot", "angle",
    "grad_centr", "reverse", "coordconv", "stream", "wait_stream",
)
_ROUTE = ("layers", "groups", "group_id", "stream", "wait_stream")  # parse_route
_SHORTCUT = ("activation", "weights_type", "weights_normalization", "from")  # parse_shortcut
_MAXPOOL = ("stride", "stride_x", "stride_y", "size", "padding", "maxpool_depth", "out_channels",
            "antialiasing", "maxpool_zero_nonmax")  # parse_maxpool
_UPSAMPLE = ("stride", "scale")  # parse_upsample
_SAM = ("from", "activation")  # parse_sam
_SCALE_CHANNELS = ("from", "scale_wh", "activation")  # parse_scale_channels
_LOCAL_AVGPOOL = ("stride", "stride_x", "stride_y", "size", "padding")  # parse_local_avgpool
_REORG3D = ("stride", "reverse")  # parse_reorg
_CONTRASTIVE = ("classes", "yolo_layer", "temperature", "cls_normalizer", "max_delta",
                "contrastive_neg_max")  # parse_contrastive
_DROPOUT = ("probability", "dropblock", "dropblock_size_rel", "dropblock_size_abs")  # parse_dropout
_YOLO = (  # parse_yolo
    "classes", "num", "mask", "max", "show_details", "max_delta", "counters_per_class",
    "label_smooth_eps", "scale_x_y", "objectness_smooth", "new_coords", "iou_normalizer",
    "obj_normalizer", "cls_normalizer", "delta_normalizer", "iou_loss", "iou_thresh_kind", "beta_nms",
    "nms_kind", "jitter", "resize", "focal_loss", "ignore_thresh", "truth_thresh", "iou_thresh", "random",
    "track_history_size", "sim_thresh", "dets_for_track", "dets_for_show", "track_ciou_norm",
    "embedding_layer", "map", "anchors",
)

#: canonical section type -> the keys darknet reads for it (AlexeyAB ``src/parser.c``)
KNOWN_KEYS: Dict[str, FrozenSet[str]] = {
    "net": frozenset(_NET),
    "convolutional": frozenset(_CONV) | COMMON_LAYER_KEYS,
    "route": frozenset(_ROUTE) | COMMON_LAYER_KEYS,
    "shortcut": frozenset(_SHORTCUT) | COMMON_LAYER_KEYS,
    "maxpool": frozenset(_MAXPOOL) | COMMON_LAYER_KEYS,
    "upsample": frozenset(_UPSAMPLE) | COMMON_LAYER_KEYS,
    "dropout": frozenset(_DROPOUT) | COMMON_LAYER_KEYS,
    "yolo": frozenset(_YOLO) | COMMON_LAYER_KEYS,
    "sam": frozenset(_SAM) | COMMON_LAYER_KEYS,
    "scale_channels": frozenset(_SCALE_CHANNELS) | COMMON_LAYER_KEYS,
    "avgpool": COMMON_LAYER_KEYS,
    "local_avgpool": frozenset(_LOCAL_AVGPOOL) | COMMON_LAYER_KEYS,
    "reorg3d": frozenset(_REORG3D) | COMMON_LAYER_KEYS,
    "contrastive": frozenset(_CONTRASTIVE) | COMMON_LAYER_KEYS,
}


def suggest_key(section_type: str, key: str) -> Optional[str]:
    """The known key of ``section_type`` closest to ``key`` (difflib ratio >= 0.7, case-insensitive),
    or None: ``suggest_key("convolutional", "fliters") == "filters"``."""
    known = KNOWN_KEYS.get(section_type, frozenset())
    by_lower = {k.lower(): k for k in known}
    if key.lower() in by_lower:
        return by_lower[key.lower()]
    hits = difflib.get_close_matches(key.lower(), sorted(by_lower), n=1, cutoff=0.7)
    return by_lower[hits[0]] if hits else None
