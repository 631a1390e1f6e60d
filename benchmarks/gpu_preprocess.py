"""CPU ``preprocess()`` vs the GPU preprocessing kernel: 1920x1080 BGR frames -> the network input.

CPU: :func:`yolo4.runtime.preprocess.preprocess` (cv2.resize + BGR->RGB + /255 + HWC->CHW, float32).
GPU: :meth:`yolo4.runtime.gpu_preprocess.GpuPreprocessor.run` = pinned staging copy + uint8 upload +
one kernel launch into a device buffer, timed to the end of the stream (stream.synchronize()). Both
end where an engine's input is ready; the CPU path would still need its float32 upload (4x the bytes),
which is not counted here. Prints a Markdown table (median milliseconds per batch) and the max |diff|
of the GPU output against the CPU's (expected 0; bound 1/255).

Needs a CUDA GPU, pycuda and the CUDA toolkit (the library is built for this GPU into a temp folder):

    python benchmarks/gpu_preprocess.py [--size 416] [--letter-box] [--half] [--runs 50]
"""

import argparse
import statistics
import sys
import tempfile
import time

import numpy as np

from yolo4.plugins.build import build_preprocess_library
from yolo4.runtime.gpu_preprocess import GpuPreprocessor
from yolo4.runtime.preprocess import preprocess


def median_ms(fn, runs):
    fn()  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=416, help="network input side (pixels)")
    ap.add_argument("--letter-box", action="store_true", help="letterbox instead of a plain resize")
    ap.add_argument("--half", action="store_true", help="float16 output instead of float32")
    ap.add_argument("--runs", type=int, default=50)
    args = ap.parse_args(argv)

    import pycuda.driver as cuda

    from yolo4.runtime.cuda_context import PrimaryContext

    ctx = PrimaryContext(cuda, 0)  # the retained primary context (never pycuda.autoinit)
    ctx.push()  # current for the whole benchmark; popped at the end
    dev = cuda.Context.get_device()
    arch = "%d%d" % dev.compute_capability()
    lib = build_preprocess_library(tempfile.mkdtemp(prefix="yolo4-pp-"), archs=[arch], log=lambda m: None)
    dtype = np.float16 if args.half else np.float32
    input_hw = (args.size, args.size)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8) for _ in range(8)]
    stream = cuda.Stream()
    pre = GpuPreprocessor(input_hw, args.letter_box, max_batch=8, dtype=dtype, library=lib)
    print(f"{dev.name()} (sm_{arch}), 1920x1080 -> {args.size}x{args.size}, "
          f"{'letterbox' if args.letter_box else 'plain'}, {np.dtype(dtype).name}, median of {args.runs}\n")
    print("| batch | CPU preprocess() ms | GPU upload + kernel ms | speed-up | max abs diff |")
    print("|---:|---:|---:|---:|---:|")
    for batch in (1, 4, 8):
        imgs = frames[:batch]
        dst = cuda.mem_alloc(pre.output_nbytes(batch))

        def gpu(imgs=imgs, dst=dst):
            pre.run(imgs, int(dst), stream)
            stream.synchronize()

        def cpu(imgs=imgs):
            preprocess(imgs, input_hw, args.letter_box)

        cpu_ms = median_ms(cpu, args.runs)
        gpu_ms = median_ms(gpu, args.runs)
        ref, _ = preprocess(imgs, input_hw, args.letter_box)
        out = np.empty(ref.shape, dtype)
        gpu()
        cuda.memcpy_dtoh(out, dst)
        diff = float(np.abs(out.astype(np.float32) - ref).max())
        print(f"| {batch} | {cpu_ms:.2f} | {gpu_ms:.2f} | {cpu_ms / gpu_ms:.1f}x | {diff:.6f} ({diff * 255:.2f}/255) |")
        dst.free()
    pre.close()
    ctx.pop()
    ctx.detach()
    return 0


if __name__ == "__main__":
    sys.exit(main())
