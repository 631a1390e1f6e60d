"""The real GPU preprocessing kernel (``yolo4/plugins/preprocess/preprocess.cu``, unchanged), run on the CPU
through HIP-CPU (:func:`yolo4.plugins.build.build_hipcpu_library`; see tests/test_plugin_hipcpu.py), gives
exactly what :func:`yolo4.runtime.preprocess.preprocess` gives: 0 differing values (float16: preprocess()'s
float32 rounded to nearest), on darknet's sample images in one mixed-size batch and on synthetic frames of
awkward sizes, plain and letterbox, at three input sizes; and what the CPU build (preprocessHost.cpp) gives.

The launch is the library's own ``yolo4_preprocess_launch`` (grid, block, per-image parameters by value, the
stream); host memory is device memory under HIP-CPU, and the launch is asynchronous as on a GPU, so each run
waits with ``hipcpu_sync()`` before reading. Skipped when ``../shared/hip-cpu`` or tbb-devel is absent.
"""

import ctypes

import numpy as np
import pytest

from yolo4.runtime.gpu_preprocess import PreprocessApi
from yolo4.runtime.preprocess import preprocess

from . import hipcpu_builds
from .test_gpu_preprocess import SIZES, sample_images, synthetic


class HipCpuPreprocessApi(PreprocessApi):
    """:class:`PreprocessApi` over the HIP-CPU build: host pointers (``run_host``), a sync after each launch."""

    def __init__(self, lib, path=None):
        super().__init__(lib, path)
        assert self.is_device  # the CUDA source says so; under HIP-CPU its "device" memory is host memory
        self.is_device = False

    def launch(self, *args, **kwargs):
        status = super().launch(*args, **kwargs)
        sync = self.lib.hipcpu_sync()
        assert sync == 0, f"the kernel failed: hipError_t {sync}"
        return status


@pytest.fixture(scope="module")
def kernel(request, tmp_path_factory):
    path = hipcpu_builds.build(request, tmp_path_factory, "preprocess")
    return HipCpuPreprocessApi(ctypes.CDLL(str(path)), path)


def assert_exact(out, ref, dtype, what):
    assert out.dtype == np.dtype(dtype) and out.shape == ref.shape, what
    expected = ref.astype(dtype)
    differ = int((out.view(np.uint16 if dtype == np.float16 else np.uint32)
                  != expected.view(np.uint16 if dtype == np.float16 else np.uint32)).sum())
    assert differ == 0, f"{what}: {differ} of {out.size} values differ from preprocess()"


@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=["float32", "float16"])
@pytest.mark.parametrize("letter_box", [False, True], ids=["plain", "letterbox"])
def test_kernel_equals_preprocess_on_darknet_samples(kernel, letter_box, dtype):
    images = sample_images()
    if not images:
        pytest.skip("darknet sample images (../shared/data/darknet/images) absent")
    for input_hw in ((416, 416), (608, 608), (320, 512)):
        ref, ref_t = preprocess(images, input_hw, letter_box)
        out, t = kernel.run_host(images, input_hw, letter_box, dtype)  # one batch of mixed sizes
        assert t == ref_t
        assert_exact(out, ref, dtype, f"samples at {input_hw}")


@pytest.mark.parametrize("letter_box", [False, True], ids=["plain", "letterbox"])
def test_kernel_equals_preprocess_on_awkward_sizes(kernel, letter_box):
    images = [synthetic(h, w, k) for k, (h, w) in enumerate(SIZES)]
    ref, _ = preprocess(images, (416, 416), letter_box)
    for dtype in (np.float32, np.float16):
        out, _ = kernel.run_host(images, (416, 416), letter_box, dtype)
        assert_exact(out, ref, dtype, "synthetic batch")


def test_kernel_equals_the_cpu_build_on_a_crop(kernel, tmp_path_factory):
    """A crop passed with its row stride (not copied), batched with a full frame: the CPU build's values."""
    from yolo4.plugins.build import build_preprocess_host_library
    from yolo4.runtime.gpu_preprocess import load_preprocess_library

    host = load_preprocess_library(build_preprocess_host_library(tmp_path_factory.mktemp("pp-host")))
    big = synthetic(480, 640, 3)
    images = [big[37:301, 55:600], big]
    for letter_box in (False, True):
        a, _ = kernel.run_host(images, (320, 512), letter_box)
        b, _ = host.run_host(images, (320, 512), letter_box)
        assert np.array_equal(a, b)
