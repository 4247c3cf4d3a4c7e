"""Block arithmetic of the shuffles that stay within a target's limits (numpy only).

A cascade of DepthToSpace ops whose block sizes multiply to the stride: block ``b1`` then ``b2``
puts phase ``p = p1*b2 + p2`` (the first block's phase is the major digit) on every axis. The
Conv's channels are then ordered so that the cascade lands every (channel, phase) in place: the
order is found by running the cascade on the row indices themselves (:func:`d2s_cascade_rows`),
which is exact whatever the modes, since DepthToSpace moves every low-resolution position alike.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np

from .subpixel import SubPixelPlan

__all__ = ["block_factors", "d2s_cascade_rows", "depth_to_space_np"]


def block_factors(stride: int, max_block: int) -> Optional[List[int]]:
    """The DepthToSpace block sizes for a stride.

    Block sizes, largest first, whose product is ``stride`` and each at most ``max_block`` (0: any);
    None when a prime factor of ``stride`` exceeds ``max_block``.
    """
    if max_block == 0 or stride <= max_block:
        return [stride]
    primes, rest, p = [], stride, 2
    while rest > 1:
        while rest % p == 0:
            primes.append(p)
            rest //= p
        p += 1
    if max(primes) > max_block:
        return None
    blocks: List[int] = []
    for f in sorted(primes, reverse=True):  # first fit: fewest blocks for small inputs like 8 = 2*4
        for i, b in enumerate(blocks):
            if b * f <= max_block:
                blocks[i] = b * f
                break
        else:
            blocks.append(f)
    return sorted(blocks, reverse=True)


def depth_to_space_np(x: np.ndarray, b: int, mode: str) -> np.ndarray:
    """ONNX DepthToSpace of a ``[N, C, H, W]`` array in numpy (``mode`` "DCR" or "CRD")."""
    n, c, h, w = x.shape
    if mode == "DCR":
        t = x.reshape(n, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2)
    else:
        t = x.reshape(n, c // (b * b), b, b, h, w).transpose(0, 1, 4, 2, 5, 3)
    return t.reshape(n, c // (b * b), h * b, w * b)


def d2s_cascade_rows(
    plan: SubPixelPlan, blocks: Sequence[int], modes: Sequence[str]
) -> Optional[np.ndarray]:
    """The Conv row order a DepthToSpace cascade needs.

    For a 2-D equal-stride CRD ``plan``: ``order`` such that a Conv whose row ``r`` holds CRD row
    ``order[r]`` is shuffled into place by DepthToSpace(``blocks[i]``, ``modes[i]``) in turn; None
    when the order would split a group's channels (a grouped Conv needs each group's rows in one
    block).
    """
    s, m_out, phases = plan.strides[0], plan.out_channels, plan.phases
    rows = np.arange(m_out * phases, dtype=np.int64).reshape(1, -1, 1, 1)
    for b, mode in zip(blocks, modes):
        rows = depth_to_space_np(rows, b, mode)
    landed = rows.reshape(
        m_out, s, s
    )  # landed[m, i, j] = the Conv row that ends at channel m, phase (i, j)
    order = np.empty(m_out * phases, dtype=np.int64)
    order[landed.ravel()] = np.arange(m_out * phases)  # CRD row of (m, i, j) is m*P + i*s + j
    if plan.group > 1:
        per_group = m_out // plan.group * phases
        if np.any(order // per_group != np.arange(order.size) // per_group):
            return None
    return order
