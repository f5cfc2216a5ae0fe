"""ThreadLimit caps the native pools inside its block and restores them after; 0 caps nothing."""
import numpy as np  # noqa: F401  (loads the BLAS pool the limit acts on)
from threadpoolctl import threadpool_info

from reccore.threads import ThreadLimit


def _blas_threads() -> set[int]:
    return {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}


def test_limit_caps_inside_the_block_and_restores_after():
    before = _blas_threads()
    limit = ThreadLimit()
    with limit(1):
        assert _blas_threads() == {1}
    assert _blas_threads() == before
    with limit(0):
        assert _blas_threads() == before
