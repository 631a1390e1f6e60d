"""The CUDA context yolo4's pycuda code runs in: the device's retained *primary* context, made
current only around each piece of pycuda work (:class:`PrimaryContext`).

Why the primary context: TensorRT (builder and runtime) uses the CUDA runtime API, which works in
the device's primary context (``cudaSetDevice`` / the first runtime call retains it and makes it
current). ``import pycuda.autoinit`` instead *creates a second, non-primary context*
(``cuCtxCreate``) and leaves it current on the importing thread. Memory and streams made in that
context are invalid in TensorRT's: an INT8 calibrator whose ``get_batch`` imports it during
``build_serialized_network`` hands TensorRT a pointer from the wrong context and the build fails
("invalid resource handle"; NVIDIA's 8.5.2 efficientdet sample imports ``pycuda.autoprimaryctx``
for this reason). pycuda's own semantics (``src/cpp/cuda.hpp``): ``Device.retain_primary_context()``
is ``cuDevicePrimaryCtxRetain``; ``Context.push()`` / the static ``Context.pop()`` are
``cuCtxPushCurrent`` / ``cuCtxPopCurrent`` on pycuda's per-thread context stack; allocations
(``mem_alloc``, ``pagelocked_empty``) belong to the context current when they are made and need one;
``detach()`` of a primary context is ``cuDevicePrimaryCtxRelease``.

So: retain once, ``with ctx:`` (push ... pop) around every allocation, copy and free, from whichever
thread, and :meth:`PrimaryContext.detach` once at the end. Nothing is left current afterwards, so the
caller's (TensorRT's) own current context is untouched. ``pycuda.autoinit`` is imported nowhere in
yolo4.

Python 3.8, torch-free; ``pycuda.driver`` is passed in (imported by the caller when needed).
"""

from typing import Any, Optional

__all__ = ["PrimaryContext"]


class PrimaryContext:
    """The retained primary context of one CUDA device, current only inside ``with`` blocks.

    Args:
        cuda: the ``pycuda.driver`` module.
        device: CUDA device ordinal (default 0: the device TensorRT builds and runs on by default).

    Usage::

        ctx = PrimaryContext(cuda, 0)
        with ctx:                       # cuCtxPushCurrent(primary)
            buf = cuda.mem_alloc(n)     # belongs to the primary context
        ...
        with ctx:
            buf.free()
        ctx.detach()                    # cuDevicePrimaryCtxRelease

    Raises:
        pycuda's errors: no driver, no such device (``cuda.init`` / ``Device``).
    """

    def __init__(self, cuda: Any, device: int = 0) -> None:
        cuda.init()
        self.device = int(device)
        self._cuda = cuda
        self.context: Optional[Any] = cuda.Device(self.device).retain_primary_context()
        self._depth = 0

    def push(self) -> None:
        """Make the primary context current on this thread (``cuCtxPushCurrent``)."""
        if self.context is None:
            raise RuntimeError("the primary context was detached")
        self.context.push()
        self._depth += 1

    def pop(self) -> None:
        """Undo one :meth:`push` (``cuCtxPopCurrent``; pycuda's ``Context.pop`` is static)."""
        self._cuda.Context.pop()
        self._depth -= 1

    def __enter__(self) -> "PrimaryContext":
        self.push()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.pop()

    def detach(self) -> None:
        """Release the retained primary context (``cuDevicePrimaryCtxRelease``; once, later calls do
        nothing), outside any ``with`` block.

        pycuda's ``primary_context::detach`` of a context that is not current pushes it and releases
        it without popping (its "pop is implicit" holds for ``cuCtxDetach`` only), so the primary
        context stays current on this thread afterwards: the context the CUDA runtime (TensorRT)
        uses on it anyway, and still retained by the runtime.

        Raises:
            RuntimeError: called inside a ``with`` block (the context is current).
        """
        if self._depth:
            raise RuntimeError("detach() inside a `with` block of the same context")
        if self.context is not None:
            ctx, self.context = self.context, None
            ctx.detach()
