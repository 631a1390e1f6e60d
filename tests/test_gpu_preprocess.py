"""GPU preprocessing (``yolo4/plugins/preprocess``) gives what :func:`yolo4.runtime.preprocess.preprocess` gives.

1. The CPU build of the kernel's arithmetic (``preprocessHost.cpp``: the same ``preprocessCommon.h``
   per-pixel function the CUDA kernel calls, compiled with g++) against ``preprocess()`` on darknet's
   sample images and on synthetic frames of awkward sizes (1x1, 3x7, 7x3, 1920x1080, much wider and much
   taller than the input, exactly the input size, exactly half of it, a 1-pixel-off size), plain and
   letterbox, float32 and float16, batched, and a crop passed with its row stride.
   Measured (opencv-python 4.14, x86-64): identical values everywhere: max |difference| = 0 and 0 % of the
   values differ at all (the kernel reproduces OpenCV's 11-bit fixed-point INTER_LINEAR and its rounding,
   then divides by 255 in float32; float16 is that float32 rounded to nearest). Asserted: max |difference|
   <= 1/255 (the documented bound), no value differs by more than 1/255, at most 0.1 % of values differ at
   all (a float-weight bilinear rounded to uint8 differs in ~12 %; a half-pixel offset or swapped
   channels in most), and the letterbox padding is exactly 0.5.
2. The CUDA kernel compiles (and links into ``libyolo4_preprocess.so``) with this machine's nvcc for sm_75
   and sm_87 without a warning; the library loads here and rejects bad parameters before touching CUDA.
3. :func:`kernel_params` gives the transforms ``preprocess()`` gives.
4. :class:`GpuPreprocessor` on stand-ins of pycuda (host memory, the CPU build behind the C entry point):
   one staging buffer and one upload per batch, frame addresses and strides right, buffers grown only for
   a larger batch and reused after waiting for the previous run, the output equal to ``preprocess()``'s.
5. On a GPU with pycuda (``-m gpu``; skipped here): :class:`GpuPreprocessor` through the real kernel,
   against ``preprocess()`` with the same bounds, including a batch above the 64 images per launch.
"""

import ctypes
import os
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from yolo4.errors import Yolo4Error
from yolo4.runtime.gpu_preprocess import (
    STATUS_BAD_PARAM,
    GpuPreprocessor,
    PreprocessImage,
    kernel_params,
    load_preprocess_library,
)
from yolo4.runtime.preprocess import preprocess

from .conftest import SHARED_DATA

INPUT_HW = (416, 416)
#: (height, width) of synthetic frames: tiny, odd, HD, wider / taller than the input, the input itself,
#: half of it (OpenCV's special 2x cases), one pixel off, non-square input-sized
SIZES = [(1, 1), (3, 7), (7, 3), (1080, 1920), (100, 900), (900, 100), (416, 416), (208, 208), (832, 832),
         (417, 415), (233, 416)]
ONE_LEVEL = 1.0 / 255.0


def sample_images():
    """Darknet's sample photos (dog, horses, person, ...) from the asset mirror, or [] when absent."""
    root = Path(os.environ.get("YOLO4_ASSET_MIRROR", str(SHARED_DATA))) / "darknet" / "images"
    return [cv2.imread(str(p)) for p in sorted(root.glob("*.jpg"))] if root.is_dir() else []


def synthetic(h, w, seed):
    """Random noise plus a gradient: every uint8 level, sharp edges, and smooth regions."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    img[: h // 2] = (np.arange(w)[None, :, None] * 255 // max(w - 1, 1)).astype(np.uint8)
    img[: h // 2, :, 1] = 255 - img[: h // 2, :, 1]
    return img


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    """The CPU build of the kernel's arithmetic (g++ only)."""
    if not shutil.which(os.environ.get("CXX", "") or "g++"):
        pytest.skip("g++ is not installed")
    from yolo4.plugins.build import build_preprocess_host_library

    api = load_preprocess_library(build_preprocess_host_library(tmp_path_factory.mktemp("pp-host")))
    assert not api.is_device
    return api


def compare(out, ref, dtype):
    """(max |out - ref|, fraction of values differing by more than 1/255, fraction differing at all);
    ``ref`` is preprocess()'s float32. float16 is compared exactly with ref rounded to float16."""
    out32 = out.astype(np.float32)
    d = np.abs(out32 - ref)
    exact_ref = ref.astype(dtype).astype(np.float32)
    return float(d.max()), float((d > ONE_LEVEL + 1e-6).mean()), float((out32 != exact_ref).mean())


def assert_close(out, ref, dtype, what):
    assert out.shape == ref.shape and out.dtype == np.dtype(dtype), (what, out.shape, out.dtype)
    max_diff, over, differ = compare(out, ref, dtype)
    half_ulp = 2.0 ** -12 if np.dtype(dtype) == np.float16 else 0.0
    assert max_diff <= ONE_LEVEL + half_ulp + 1e-6, f"{what}: max |diff| {max_diff * 255:.3f}/255"
    assert over == 0.0, f"{what}: {over:.2%} of values differ by more than 1/255"
    assert differ <= 1e-3, f"{what}: {differ:.2%} of values differ from preprocess()"
    return max_diff, differ


def assert_padding(out, transforms, letter_box):
    """Outside each image's content, exactly 0.5 (letterbox); plain resize has no padding."""
    for i, t in enumerate(transforms):
        new_w, new_h = round(t.orig_w * t.scale_x), round(t.orig_h * t.scale_y)
        px, py = int(t.pad_x), int(t.pad_y)
        mask = np.ones(out.shape[2:], bool)
        mask[py:py + new_h, px:px + new_w] = False
        if not letter_box:
            assert not mask.any()
        assert (out[i][:, mask] == 0.5).all(), f"image {i}: padding is not exactly 0.5"


@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=["float32", "float16"])
@pytest.mark.parametrize("letter_box", [False, True], ids=["plain", "letterbox"])
def test_host_build_equals_preprocess_synthetic(host, letter_box, dtype):
    for k, (h, w) in enumerate(SIZES):
        img = synthetic(h, w, k)
        ref, ref_t = preprocess([img], INPUT_HW, letter_box)
        out, t = host.run_host([img], INPUT_HW, letter_box, dtype)
        assert t == ref_t
        assert_close(out, ref, dtype, f"{w}x{h}")
        assert_padding(out, t, letter_box)


@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=["float32", "float16"])
@pytest.mark.parametrize("letter_box", [False, True], ids=["plain", "letterbox"])
def test_host_build_equals_preprocess_darknet_samples(host, letter_box, dtype):
    images = sample_images()
    if not images:
        pytest.skip("darknet sample images (../shared/data/darknet/images) absent")
    for input_hw in (INPUT_HW, (608, 608), (320, 512)):
        ref, ref_t = preprocess(images, input_hw, letter_box)
        out, t = host.run_host(images, input_hw, letter_box, dtype)  # one batch of mixed sizes
        assert t == ref_t
        max_diff, differ = assert_close(out, ref, dtype, f"samples at {input_hw}")
        assert_padding(out, t, letter_box)
        print(f"{'letterbox' if letter_box else 'plain'} {np.dtype(dtype).name} {input_hw}: "
              f"max |diff| {max_diff * 255:.2f}/255, {differ:.4%} of values differ")


def test_host_build_mixed_batch_crops_and_colour_formats(host):
    """One batch of differently sized frames, a crop with a larger row stride (not copied), grey and BGRA."""
    big = synthetic(300, 500, 7)
    crop = big[37:237, 11:411]
    assert not crop.flags["C_CONTIGUOUS"] and crop.strides[0] == 1500
    grey = synthetic(120, 90, 8)[:, :, 0]
    bgra = np.dstack([synthetic(64, 200, 9), np.full((64, 200), 77, np.uint8)])
    images = [crop, grey, bgra, synthetic(1080, 1920, 10)]
    for letter_box in (False, True):
        ref, ref_t = preprocess(images, INPUT_HW, letter_box)
        out, t = host.run_host(images, INPUT_HW, letter_box)
        assert t == ref_t
        assert_close(out, ref, np.float32, "mixed batch")
        assert_padding(out, t, letter_box)


def test_channels_and_layout_are_rgb_chw(host):
    """A pure-blue BGR frame is (0, 0, 1) in R, G, B planes: no swapped channels, planar layout."""
    img = np.zeros((50, 80, 3), np.uint8)
    img[:, :, 0] = 255
    out, _ = host.run_host([img], (32, 64), False)
    assert out.shape == (1, 3, 32, 64)
    assert (out[0, 0] == 0).all() and (out[0, 1] == 0).all() and (out[0, 2] == 1).all()


def test_bad_parameters_are_rejected(host):
    img = np.zeros((10, 10, 3), np.uint8)
    dst = np.zeros((1, 3, 8, 8), np.float32)

    def launch(**over):
        fields = dict(data=img.ctypes.data, width=10, height=10, stride=30, new_w=8, new_h=8, pad_x=0, pad_y=0,
                      letterbox=0, reserved=0)
        fields.update(over)
        arr = (PreprocessImage * 1)(PreprocessImage(**fields))
        return host.launch(arr, 1, dst.ctypes.data, 8, 8, False, None)

    assert launch() == 0
    assert launch(new_w=4, pad_x=2) == STATUS_BAD_PARAM  # plain resize must fill the input
    assert launch(new_w=4, pad_x=5, letterbox=1) == STATUS_BAD_PARAM  # content past the right edge
    assert launch(new_w=4, pad_x=4, letterbox=1) == 0
    assert launch(stride=29) == STATUS_BAD_PARAM
    assert launch(data=None) == STATUS_BAD_PARAM
    assert launch(width=0) == STATUS_BAD_PARAM
    with pytest.raises(ValueError, match="float32 or float16"):
        host.run_host([img], (8, 8), False, np.float64)
    with pytest.raises(ValueError, match="at least one"):
        host.run_host([], (8, 8), False)


# ---- geometry ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("letter_box", [False, True], ids=["plain", "letterbox"])
def test_kernel_params_are_preprocess_transforms(letter_box):
    hws = SIZES + [(480, 640), (640, 480), (1, 4000), (4000, 1)]
    images = [np.zeros((h, w, 3), np.uint8) for h, w in hws]
    for input_hw in (INPUT_HW, (320, 608)):
        params = kernel_params(hws, input_hw, letter_box)
        _, transforms = preprocess(images, input_hw, letter_box)
        assert [p.transform for p in params] == transforms
        for p, (h, w) in zip(params, hws):
            assert (p.src_h, p.src_w) == (h, w) and p.letter_box == letter_box
            assert 0 <= p.pad_x and p.pad_x + p.new_w <= input_hw[1]
            assert 0 <= p.pad_y and p.pad_y + p.new_h <= input_hw[0]
            if not letter_box:
                assert (p.new_w, p.new_h, p.pad_x, p.pad_y) == (input_hw[1], input_hw[0], 0, 0)
    with pytest.raises(ValueError):
        kernel_params([(0, 5)], INPUT_HW, True)


def test_missing_library_says_build_plugin(tmp_path, host):
    with pytest.raises(Yolo4Error, match="yolo4 build-plugin") as e:
        GpuPreprocessor(INPUT_HW, True, 4, library=tmp_path / "libyolo4_preprocess.so")
    assert "libyolo4_preprocess.so" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(Yolo4Error, match="CPU build"):
        GpuPreprocessor(INPUT_HW, True, 4, library=host.path)


# ---- GpuPreprocessor's buffers and calls, on stand-ins (sequencing only: no GPU here) -----------------
class _FakeAllocation:
    """Host memory standing in for a pycuda DeviceAllocation (int() is its address)."""

    def __init__(self, nbytes):
        self.array = np.zeros(nbytes, np.uint8)
        self.freed = False

    def __int__(self):
        assert not self.freed, "use after free"
        return self.array.ctypes.data

    def free(self):
        self.freed = True


class _FakeCuda:
    """Stand-in of ``pycuda.driver``: host buffers, copies done at once, events that count syncs."""

    def __init__(self):
        self.allocs, self.calls = [], []
        outer = self

        class Event:
            def record(self, stream):
                outer.calls.append(("record", stream))

            def synchronize(self):
                outer.calls.append(("sync",))

        self.Event = Event

    def mem_alloc(self, nbytes):
        self.allocs.append(_FakeAllocation(nbytes))
        self.calls.append(("mem_alloc", nbytes))
        return self.allocs[-1]

    def pagelocked_empty(self, n, dtype):
        return np.zeros(n, dtype)

    def memcpy_htod_async(self, dst, src, stream):
        assert src.nbytes <= dst.array.nbytes
        ctypes.memmove(int(dst), src.ctypes.data, src.nbytes)
        self.calls.append(("htod", src.nbytes, stream))


class _FakeStream:
    handle = 0


def test_gpu_preprocessor_buffers_on_stand_ins(host, monkeypatch):
    """run() packs the frames into one staging buffer, uploads it with one copy, launches once with each
    frame's address and stride, returns preprocess()'s transforms; buffers are allocated once and grown
    only for a larger batch; a run waits for the previous one before reusing them. The CPU build stands
    in for the CUDA library and host memory for device memory (the stand-ins check sequencing only)."""
    import yolo4.runtime.gpu_preprocess as gp

    fake = _FakeCuda()
    api = gp.PreprocessApi(host.lib, host.path)
    api.is_device = True  # host pointers throughout: the CPU build computes what the kernel would
    monkeypatch.setattr(gp, "load_preprocess_library", lambda path=None: api)
    monkeypatch.setattr(gp, "_import_pycuda", lambda: fake)
    stream = _FakeStream()
    for dtype in (np.float32, np.float16):
        pre = GpuPreprocessor(INPUT_HW, True, max_batch=5, dtype=dtype)
        fake.calls.clear()
        batches = [[synthetic(480, 640, 1), synthetic(3, 7, 2)],
                   [synthetic(1080, 1920, 3), synthetic(417, 415, 4)[:, :, 0], synthetic(20, 30, 5)],
                   [synthetic(100, 900, 6)]]
        for batch in batches:
            ref, ref_t = preprocess(batch, INPUT_HW, True)
            out = np.full(ref.shape, np.nan, dtype)
            assert pre.output_nbytes(len(batch)) == out.nbytes
            assert pre.run(batch, out.ctypes.data, stream) == ref_t
            assert_close(out, ref, dtype, "stand-in run")
            assert_padding(out, ref_t, True)
        kinds = [c[0] for c in fake.calls]
        # one allocation, grown once for the HD batch, kept for the small one; a sync before each reuse
        assert kinds == ["mem_alloc", "htod", "record", "sync", "mem_alloc", "htod", "record", "sync", "htod",
                         "record"], kinds
        assert all(c[2] is stream for c in fake.calls if c[0] == "htod")
        assert fake.allocs[-2].freed and not fake.allocs[-1].freed
        with pytest.raises(ValueError, match="1 to 5 images"):
            pre.run([synthetic(4, 4, 0)] * 6, 0, stream)
        pre.close()
        assert fake.allocs[-1].freed


# ---- nvcc ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cuda():
    from yolo4.plugins.build import find_cuda

    try:
        return find_cuda()
    except Yolo4Error as e:
        pytest.skip(f"no CUDA toolkit: {e}")


@pytest.mark.parametrize("arch", ["75", "87"], ids=["sm_75", "sm_87"])
def test_kernel_compiles(arch, cuda, tmp_path):
    from yolo4.plugins.build import PREPROCESS_LIBRARY_NAME, build_preprocess_library

    if arch not in cuda.archs:
        pytest.skip(f"nvcc {cuda.version} cannot compile sm_{arch}")
    lib = build_preprocess_library(tmp_path, archs=[arch], log=lambda m: None)
    assert lib == tmp_path / PREPROCESS_LIBRARY_NAME and lib.stat().st_size > 10_000
    log = lib.with_name(lib.name + ".log").read_text()
    assert "warning" not in log.lower(), log[-3000:]
    cuobjdump = cuda.root / "bin" / "cuobjdump"
    if cuobjdump.is_file():
        listing = subprocess.run([str(cuobjdump), "--list-elf", str(lib)], capture_output=True, text=True).stdout
        assert f"sm_{arch}" in listing, listing
    api = load_preprocess_library(lib)  # loads without a GPU (CUDA runtime linked statically)
    assert api.is_device
    img = (PreprocessImage * 1)(PreprocessImage(data=None, width=10, height=10, stride=30, new_w=8, new_h=8))
    assert api.launch(img, 1, 1 << 20, 8, 8, False, None) == STATUS_BAD_PARAM  # checked before any CUDA call
    assert ctypes.CDLL(str(lib)).yolo4_preprocess_launch


# ---- on a GPU ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gpu_context():
    """A pycuda context on GPU 0; skips without pycuda or a GPU."""
    try:
        import pycuda.driver as drv
    except Exception as e:  # ImportError, or pycuda failing to find libcuda
        pytest.skip(f"pycuda unavailable ({type(e).__name__}: {e})")
    try:
        drv.init()
        if drv.Device.count() == 0:
            pytest.skip("no CUDA GPU")
        dev = drv.Device(0)
    except drv.Error as e:
        pytest.skip(f"no usable CUDA GPU ({e})")
    ctx = dev.make_context()
    try:
        yield drv, dev
    finally:
        ctx.pop()
        ctx.detach()


@pytest.mark.gpu
@pytest.mark.pycuda
def test_kernel_on_gpu_equals_preprocess(gpu_context, cuda, tmp_path):
    from yolo4.plugins.build import build_preprocess_library

    drv, dev = gpu_context
    major, minor = dev.compute_capability()
    arch = "%d%d" % (major, minor)
    archs = [arch] if arch in cuda.archs else []  # else the default set (PTX of the newest JIT-compiles)
    lib = build_preprocess_library(tmp_path, archs=archs, log=lambda m: None)
    stream = drv.Stream()
    images = [synthetic(h, w, k) for k, (h, w) in enumerate(SIZES)] + sample_images()
    for dtype in (np.float32, np.float16):
        for letter_box in (False, True):
            pre = GpuPreprocessor(INPUT_HW, letter_box, max_batch=70, dtype=dtype, library=lib)
            # twice: the second batch reuses (and, being larger, grows) the staging and device buffers
            for batch in (images[:3], images, [synthetic(40 + k, 30 + 3 * k, k) for k in range(66)]):
                ref, ref_t = preprocess(batch, INPUT_HW, letter_box)
                dst = drv.mem_alloc(pre.output_nbytes(len(batch)))
                drv.memset_d8(dst, 0xFF, pre.output_nbytes(len(batch)))  # NaN everywhere: all must be written
                t = pre.run(batch, int(dst), stream)
                out = np.empty(ref.shape, dtype)
                stream.synchronize()
                drv.memcpy_dtoh(out, dst)
                dst.free()
                assert t == ref_t
                assert_close(out, ref, dtype, f"GPU batch of {len(batch)}")
                assert_padding(out, t, letter_box)
            pre.close()
