"""Smallest failing subsets of a list, with an async "still fails?" test.

`binary_reduce` is adaptive group testing: a binary search over prefixes finds the
last element the failure needs, then the next one among those before it, and so
on - about m*log2(n) tests for m needed elements out of n, and 1-minimal when
removing elements never makes a passing subset fail. `ddmin` (Zeller) is the
classic, costlier on several needed elements but robust to non-monotone tests; the
benchmark's naive baseline uses it. Both keep the original order.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def chunks(items: Sequence[T], n: int) -> list[list[T]]:
    """`items` split into `n` nearly equal, contiguous, non-empty parts."""
    size, extra = divmod(len(items), n)
    out, start = [], 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        out.append(list(items[start:end]))
        start = end
    return [c for c in out if c]


async def ddmin(items: Sequence[T], fails: Callable[[list[T]], Awaitable[bool]]) -> list[T]:
    """A 1-minimal sublist of `items` for which `fails` holds (assumed for `items`).

    Tries each chunk alone, then each complement, doubling the granularity when
    neither fails. The empty list is never tried: a scenario needs a request."""
    current = list(items)
    n = 2
    while len(current) >= 2:
        parts = chunks(current, n)
        complements = [] if len(parts) == 2 else [
            [x for j, part in enumerate(parts) if j != i for x in part] for i in range(len(parts))]
        for i, subset in enumerate(parts + complements):
            if await fails(subset):
                current = subset
                n = 2 if i < len(parts) else max(n - 1, 2)
                break
        else:
            if n >= len(current):
                break
            n = min(len(current), 2 * n)
    return current


async def binary_reduce(items: Sequence[T], fails: Callable[[list[T]], Awaitable[bool]]) -> list[T]:
    """The needed elements of `items` (assumed to fail as a whole), found one by one
    with a binary search for the shortest failing prefix."""
    order = {id(x): i for i, x in enumerate(items)}
    needed: list[T] = []
    pool = list(items)  # elements not yet ruled out, all before every needed one

    def subset(k: int) -> list[T]:
        return sorted(needed + pool[:k], key=lambda x: order[id(x)])

    while pool:
        if needed and await fails(subset(0)):
            break
        passing, failing = 0, len(pool)  # subset(len(pool)) is known to fail
        while failing - passing > 1:
            mid = (passing + failing) // 2
            if await fails(subset(mid)):
                failing = mid
            else:
                passing = mid
        needed.append(pool[failing - 1])
        pool = pool[:failing - 1]
    return subset(0)
