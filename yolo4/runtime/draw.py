"""Draw detections on an image with OpenCV: one box and a ``"name score"`` label per detection.

Python 3.8, torch-free.
"""

import colorsys
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np

from .postprocess import Detections

__all__ = ["class_color", "draw_detections"]


def class_color(class_id: int) -> Tuple[int, int, int]:
    """A stable BGR colour for a class id (hues spaced by the golden ratio, so neighbours differ).

    Returns:
        ``(b, g, r)`` ints in 0..255; the same id always gives the same colour.
    """
    hue = (int(class_id) * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(b * 255), int(g * 255), int(r * 255)


def draw_detections(img: np.ndarray, det: Detections, names: Optional[Sequence[str]] = None,
                    thickness: Optional[int] = None, font_scale: Optional[float] = None) -> np.ndarray:
    """Return a copy of ``img`` with the detections drawn.

    Args:
        img: ``HxWx3 uint8`` BGR image (not modified).
        det: :class:`Detections` with boxes in this image's pixels (x1, y1, x2, y2).
        names: class names (index = class id); an id without a name is drawn as its number.
        thickness: box line width in pixels; default scales with the image size.
        font_scale: label font scale; default scales with the image size.

    Returns:
        ``HxWx3 uint8`` BGR annotated copy. Labels read ``"<name> <score:.2f>"`` on a filled box of
        the class colour, above the box (inside it when there is no room above).
    """
    out = np.ascontiguousarray(img).copy()
    h, w = out.shape[:2]
    lw = thickness or max(1, int(round((h + w) / 2 * 0.003)))
    fs = font_scale or max(0.4, lw / 3)
    ft = max(1, lw - 1)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for box, score, cid in zip(np.asarray(det.boxes), np.asarray(det.scores), np.asarray(det.class_ids)):
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        color = class_color(int(cid))
        cv2.rectangle(out, (x1, y1), (x2, y2), color, lw, cv2.LINE_AA)
        name = names[int(cid)] if names is not None and 0 <= int(cid) < len(names) else str(int(cid))
        label = f"{name} {float(score):.2f}"
        (tw, th), base = cv2.getTextSize(label, font, fs, ft)
        top = y1 - th - base - 2 if y1 - th - base - 2 >= 0 else y1
        cv2.rectangle(out, (x1, top), (x1 + tw + 2, top + th + base + 2), color, -1, cv2.LINE_AA)
        b, g, r = color
        text_color = (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else (255, 255, 255)
        cv2.putText(out, label, (x1 + 1, top + th + 1), font, fs, text_color, ft, cv2.LINE_AA)
    return out
