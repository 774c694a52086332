"""One BLAS thread while Assay computes statistics, so the thread count never changes a digit.

Imports only the standard library at module level (threadpoolctl when first used), so the
lightweight modules that wrap their entry points in it stay light to import.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

__all__ = ["one_blas_thread"]

_Function = TypeVar("_Function", bound=Callable[..., Any])
_blas_controller: Any = None


def one_blas_thread(function: _Function) -> _Function:
    """Return `function` run with BLAS limited to one thread (restored afterwards).

    A multi-threaded BLAS splits the sums of a matrix-vector product between threads, so the
    last bits of a point estimate (and, through the calibration refits, the eighth digit of a
    bound) depended on the thread count. One thread makes every result identical whatever the
    host's BLAS setting, and costs nothing here: the kernels are memory-bound gathers, and the
    weight blocks are drawn on a thread of their own.
    """

    @functools.wraps(function)
    def pinned(*args: Any, **kwargs: Any) -> Any:
        global _blas_controller
        from threadpoolctl import ThreadpoolController

        if _blas_controller is None:
            _blas_controller = ThreadpoolController()
        with _blas_controller.limit(limits=1, user_api="blas"):
            return function(*args, **kwargs)

    return cast(_Function, pinned)
