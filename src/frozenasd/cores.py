"""The cores this process may use, and numpy's BLAS kept to one thread so that ONNX Runtime has them.

numpy's BLAS (OpenBLAS in the wheels) runs a matrix product on every core and then leaves its
threads spinning for a while. The products of the frontends and detectors are small, so the extra
threads gain nothing there, but their spinning takes cores from the encoder that runs right after:
on a 2-core machine it made one-clip aiSFX scoring 1.5× and YAMNet 1.4× slower
(``benchmarks/blas_threads.py``). Inside
:func:`one_blas_thread` BLAS runs on the calling thread alone.

The limit is process-wide, as BLAS libraries keep it; threadpoolctl lets one thread at a time change
it (another thread's scope then changes nothing). A process that scores on several threads at once
(the scoring service) calls :func:`one_blas_thread_from_now` once instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_controller: Any = None


def _blas_controller() -> Any:
    global _controller
    if _controller is None:  # finding the loaded BLAS libraries takes milliseconds: once
        # numpy and scipy (scikit-learn's) each bring a BLAS library: load both so the controller finds them
        import numpy  # noqa: F401
        import scipy.linalg  # noqa: F401
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
    return _controller


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """Run the block with BLAS on one thread; the earlier limit comes back after it."""
    with _blas_controller().limit(limits=1, user_api="blas"):
        yield


def one_blas_thread_from_now() -> None:
    """BLAS on one thread for the rest of this process (called from its main thread)."""
    _blas_controller().limit(limits=1, user_api="blas")


def usable_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
