"""Seeded fuzzing of the cfg -> specs -> Darknet -> forward path: only project errors may come out.

Mutants are derived from the real small cfgs (yolov4-tiny, yolov3-tiny, yolov4-tiny-3l; shrunk: 1 class,
1/8 of the filters, 64x64 input) and a hand-made cfg using every section type: values changed (huge,
zero, negative, float, empty, junk), lines and sections deleted or duplicated, section types swapped,
route/shortcut indices changed. Each mutant is parsed and built; those accepted are constructed and run
forward on a small input. Anything but a :class:`yolo4.errors.Yolo4Error` fails the test with the
mutant's recipe; each case has a wall-clock budget, and the process's peak memory may not grow by more
than 1 GiB.
"""

import random
import re
import resource
import signal
import warnings

import pytest
import torch

from yolo4.errors import Yolo4Error
from yolo4.model import Darknet
from yolo4.model.cfg import (
    MAX_ACTIVATION,
    MAX_PARAMS,
    SECTION_ALIASES,
    ConvSpec,
    build_specs,
    infer_shapes,
    parse_cfg_text,
    rehead_cfg_text,
)

HANDMADE = """[net]
batch=1
width=64
height=64
channels=3
letter_box=1

[convolutional]
batch_normalize=1
filters=8
size=3
stride=2
pad=1
activation=mish

[maxpool]
size=2
stride=2

[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
dilation=1
activation=leaky

[shortcut]
from=-2
activation=linear

[route]
layers=-1,-3
groups=2
group_id=1

[dropout]
probability=.1

[convolutional]
filters=16
size=3
stride=2
pad=1
groups=2
activation=swish

[convolutional]
size=1
stride=1
pad=1
filters=18
activation=linear

[yolo]
mask=3,4,5
anchors=10,14,23,27,37,58,81,82,135,169,344,319
classes=1
num=6
scale_x_y=1.05
iou_loss=ciou
nms_kind=greedynms

[route]
layers=-3

[upsample]
stride=2

[route]
layers=-1,3

[convolutional]
size=1
stride=1
pad=1
filters=18
activation=logistic

[yolo]
mask=0,1,2
anchors=10,14,23,27,37,58,81,82,135,169,344,319
classes=1
num=6
new_coords=1
"""

REAL = ("yolov4-tiny", "yolov3-tiny", "yolov4-tiny-3l")

VALUES = ["0", "-1", "-3", "1", "2", "3", "7", "31", "0.5", "2.5", "1e20", "99999", "100000000000000000000",
          "1000000000", "2147483648", "", "abc", ",", "-", "1,2", "nan", "inf", "1e999", "+", "0x10", "1,,2"]
HEADERS = sorted(SECTION_ALIASES) + ["avgpool", "Yolo", "", "net"]
KEYS = ["filters", "size", "stride", "pad", "padding", "groups", "group_id", "layers", "from", "dilation",
        "mask", "num", "classes", "anchors", "width", "height", "channels", "activation", "probability",
        "scale", "stride_x", "stride_y", "batch_normalize", "fliters", "scale_x_y", "new_coords"]
CASE_BUDGET_S = 10.0   # per mutant, wall clock (a slow CI core under load included)
RUN_PARAM_BUDGET = 3_000_000   # accepted mutants bigger than this are built, not run, here (CPU time)


def shrink(text):
    """A real cfg made small: 1 class, 1/8 of the filters (head convs re-headed), 64x64 input."""
    text, heads = rehead_cfg_text(text, 1)
    sections = parse_cfg_text(text, validate=False)
    head_lines = {sections[i + 1].option_lines["filters"] for i in heads}
    out = []
    for n, line in enumerate(text.splitlines(), start=1):
        m = re.match(r"^\s*filters\s*=\s*(\d+)\s*$", line)
        if m and n not in head_lines:
            line = "filters=%d" % max(2, int(m.group(1)) // 8)
        line = re.sub(r"^\s*(width|height)\s*=.*$", r"\1=64", line)
        out.append(line)
    return "\n".join(out) + "\n"


def _sections(lines):
    return [i for i, ln in enumerate(lines) if ln.strip().startswith("[")]


def mutate(text, rng):
    """``(mutated text, recipe)``: 1 to 3 random edits."""
    lines = text.splitlines()
    recipe = []
    for _ in range(rng.randint(1, 3)):
        opts = [i for i, ln in enumerate(lines) if "=" in ln and not ln.lstrip().startswith("#")]
        heads = _sections(lines)
        op = rng.choice(["value", "value", "value", "index", "del_line", "dup_line", "del_section",
                         "dup_section", "swap_type", "insert", "size"])
        if op == "value" and opts:
            i = rng.choice(opts)
            key = lines[i].split("=", 1)[0]
            lines[i] = f"{key}={rng.choice(VALUES)}"
        elif op == "index":
            refs = [i for i in opts if lines[i].split("=", 1)[0].strip() in ("layers", "from")]
            if not refs:
                continue
            i = rng.choice(refs)
            vals = [str(rng.choice([-1, -2, -3, -5, -9, -30, 0, 1, 2, 5, 40, 10 ** 6]))
                    for _ in range(rng.randint(1, 3))]
            lines[i] = lines[i].split("=", 1)[0] + "=" + ",".join(vals)
        elif op == "del_line" and len(lines) > 1:
            i = rng.randrange(len(lines))
            del lines[i]
        elif op == "dup_line" and lines:
            i = rng.randrange(len(lines))
            lines.insert(rng.randrange(len(lines) + 1), lines[i])
        elif op in ("del_section", "dup_section") and heads:
            k = rng.randrange(len(heads))
            start = heads[k]
            end = heads[k + 1] if k + 1 < len(heads) else len(lines)
            block = lines[start:end]
            if op == "del_section":
                del lines[start:end]
            else:
                at = rng.choice(heads + [len(lines)])
                lines[at:at] = block
        elif op == "swap_type" and heads:
            i = rng.choice(heads)
            lines[i] = f"[{rng.choice(HEADERS)}]"
        elif op == "insert":
            junk = rng.choice([f"{rng.choice(KEYS)}={rng.choice(VALUES)}", "foo", "[", "[]", "=5", "a=b=c",
                               "\ufeff[net]", "#comment", "key = 1 # note"])
            lines.insert(rng.randrange(len(lines) + 1), junk)
        elif op == "size":
            i = next((i for i in opts if lines[i].split("=", 1)[0].strip() in ("width", "height")), None)
            if i is None:
                continue
            lines[i] = lines[i].split("=", 1)[0] + "=" + rng.choice(["32", "64", "96", "100", "0", "-64", "65"])
        else:
            continue
        recipe.append(op)
    return "\n".join(lines) + "\n", recipe


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout()


def run_one(text, name):
    """``"error"`` (a project error), ``"ran"`` (built and run forward), or ``"built"`` (accepted,
    too big to run here or no small input fits: it raised a project error for those sizes)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sections = parse_cfg_text(text, path=name, validate=False)
            net, specs = build_specs(sections)
    except Yolo4Error:
        return "error"
    params = sum(sp.num_params() for sp in specs if isinstance(sp, ConvSpec))
    assert params <= MAX_PARAMS
    assert max(c * h * w for c, h, w in infer_shapes(net, specs)) <= MAX_ACTIVATION
    if params > RUN_PARAM_BUDGET:
        return "built"
    model = Darknet(sections, text=text, init=True).eval()
    for side in sorted({64, net.stride, 2 * net.stride}):
        if side > 256:
            break
        try:
            hw = model.check_input_size(side)
        except Yolo4Error:
            continue
        with torch.no_grad():
            boxes, scores = model(torch.rand(1, 3, *hw))
            raw = model(torch.rand(1, 3, *hw), raw=True)
        assert boxes.shape[0] == 1 and boxes.shape[1] == scores.shape[1] and boxes.shape[2] == 4
        assert len(raw) == len(model.yolo_layers)
        return "ran"
    return "built"


def fuzz(seeds, n, seed):
    rng = random.Random(seed)
    torch.manual_seed(seed)
    counts = {"error": 0, "ran": 0, "built": 0}
    old = signal.signal(signal.SIGALRM, _alarm)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        for k in range(n):
            base_name, base = seeds[k % len(seeds)]
            text, recipe = mutate(base, rng)
            name = f"{base_name}-mutant{k}.cfg"
            signal.setitimer(signal.ITIMER_REAL, CASE_BUDGET_S)  # a hang guard, not a timing check
            try:
                counts[run_one(text, name)] += 1
            except _Timeout:
                pytest.fail(f"{name} ({recipe}) took more than {CASE_BUDGET_S} s:\n{text}")
            except Exception as e:  # noqa: BLE001 - the point of the test
                pytest.fail(f"{name} ({recipe}) raised {type(e).__name__}: {e}\n{text}")
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
    finally:
        signal.signal(signal.SIGALRM, old)
    grew_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0
    assert grew_kib < 1024 * 1024, f"peak memory grew by {grew_kib / 1024:.0f} MiB"
    return counts


def _report(capsys, what, n, counts):
    accepted = counts["ran"] + counts["built"]
    with capsys.disabled():
        print(f"\ncfg fuzz ({what}): {n} mutants tried, {counts['error']} project errors, {accepted} accepted "
              f"({counts['ran']} ran forward, {counts['built']} built only)")


def test_fuzz_handmade_cfg(capsys):
    parse_cfg_text(HANDMADE)  # the seed itself is valid
    n = 800
    counts = fuzz([("handmade", HANDMADE)], n, seed=20240611)
    _report(capsys, "hand-made cfg", n, counts)
    assert counts["error"] > n // 4 and counts["ran"] > n // 10  # the mutations hit both outcomes


def test_fuzz_real_tiny_cfgs(shared_data, capsys):
    seeds = []
    for name in REAL:
        small = shrink((shared_data / "darknet" / "cfg" / (name + ".cfg")).read_text())
        parse_cfg_text(small)
        seeds.append((name, small))
    n = 1800
    counts = fuzz(seeds, n, seed=4)
    _report(capsys, ", ".join(REAL), n, counts)
    assert counts["error"] > n // 4 and counts["ran"] > n // 10
