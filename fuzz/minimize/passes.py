"""The request and content passes: named verbs over a `Problem`.

Rules every pass obeys (as in Hypothesis' shrinker and Shrink Ray):
- it builds candidates from `problem.current` and judges them only through
  `problem.consider()`, which replays, applies the sequential test, refuses anything
  not strictly simpler, and makes an accepted candidate the new `current`;
- it tries the biggest cut first and retries the same site after an acceptance;
- it never changes the schedule (that is `timing`'s job) and keeps media consistent
  (`Scenario.with_requests` drops media no body refers to any more).
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import replace
from typing import Any

from fuzz.media import ImageRecipe
from fuzz.minimize import bodies, images
from fuzz.minimize.subsets import binary_reduce
from fuzz.minimize.problem import Problem
from fuzz.model import RequestSpec, Scenario

Changes = dict[str, Any]  # keyword changes for `dataclasses.replace` on a RequestSpec


def with_request(scenario: Scenario, index: int, **changes: Any) -> Scenario:
    """The scenario with request `index` changed (and only the media still used)."""
    requests = list(scenario.requests)
    requests[index] = replace(requests[index], **changes)
    return scenario.with_requests(tuple(requests))


async def first_accepted(problem: Problem, candidates: Iterable[Scenario | None]) -> bool:
    """Consider candidates in order until one is accepted (lazily: later candidates
    are built from the `current` they are judged against)."""
    for candidate in candidates:
        if candidate is not None and await problem.consider(candidate):
            return True
    return False


async def _each_request(problem: Problem, variants: Callable[[RequestSpec], Iterator[Changes]]) -> None:
    """For each request, accept the first simpler variant, then look at it again."""
    i = 0
    while i < len(problem.current.requests):
        spec = problem.current.requests[i]
        found = await first_accepted(problem, (with_request(problem.current, i, **changes)
                                               for changes in variants(spec)))
        if not found:
            i += 1


async def drop_requests(problem: Problem) -> None:
    """Adaptive group testing over the requests (`binary_reduce`): the biggest win
    for the fewest replays, so it runs first. Then each survivor is tried without
    once more (a flaky rejection gets a second chance), which catches an extra
    request a missed reduction let through."""
    base = problem.current

    async def fails(subset: list[RequestSpec]) -> bool:
        return await problem.consider(base.with_requests(tuple(subset)))

    if len(base.requests) > 1:
        await binary_reduce(base.requests, fails)
    i = 0
    while len(problem.current.requests) > 1 and i < len(problem.current.requests):
        kept = problem.current.requests[:i] + problem.current.requests[i + 1:]
        if not await problem.consider(problem.current.with_requests(kept), second_chance=True):
            i += 1


def _all_then_each(body: Any, items: list, remove: Callable[[Any, set], Any]) -> Iterator[Changes]:
    """Bodies without all of `items` (when there are several), then without each one."""
    if len(items) > 1:
        yield {"body": remove(body, set(items))}
    for item in items:
        yield {"body": remove(body, {item})}


async def drop_images(problem: Problem) -> None:
    """All images of a request, then one image at a time."""
    await _each_request(problem, lambda spec: _all_then_each(
        spec.body, bodies.image_sites(spec.body), bodies.without_parts))


async def drop_messages(problem: Problem) -> None:
    """System prompt and history turns: all of them, then one at a time."""
    await _each_request(problem, lambda spec: _all_then_each(
        spec.body, bodies.droppable_messages(spec.body), bodies.without_messages))


async def drop_tools(problem: Problem) -> None:
    """No tools, default tool_choice, then fewer tools."""
    await _each_request(problem, lambda spec: (
        {"body": b} for b in bodies.simpler_tool_configs(spec.body)))


async def simplify_schema(problem: Problem) -> None:
    """No response_format / structured_outputs, json_object, then a smaller JSON Schema."""
    await _each_request(problem, lambda spec: (
        {"body": b} for b in itertools.chain(bodies.simpler_response_formats(spec.body),
                                             bodies.simpler_structured_outputs(spec.body))))


async def default_sampling(problem: Problem) -> None:
    """Server defaults for every sampling knob at once, then knob by knob."""
    def variants(spec: RequestSpec) -> Iterator[Changes]:
        present = tuple(k for k in bodies.SAMPLING_KEYS if k in spec.body)
        if len(present) > 1:
            yield {"body": bodies.without_keys(spec.body, present)}
        for key in present:
            yield {"body": bodies.without_keys(spec.body, (key,))}
    await _each_request(problem, variants)


async def no_streaming(problem: Problem) -> None:
    """A plain response read to the end; else keep the stream but read it all, or
    drop only `stream_options`."""
    def variants(spec: RequestSpec) -> Iterator[Changes]:
        streamed = any(k in spec.body for k in bodies.STREAM_KEYS)
        if streamed:
            yield {"body": bodies.without_keys(spec.body, bodies.STREAM_KEYS),
                   "disconnect_after_chunks": None}
        if spec.disconnect_after_chunks is not None:
            yield {"disconnect_after_chunks": None}
        if "stream_options" in spec.body:
            yield {"body": bodies.without_keys(spec.body, ("stream_options",))}
    await _each_request(problem, variants)


async def shorten_text(problem: Problem) -> None:
    """Each text: halve, then cut quarters and eighths, until no cut is accepted."""
    i = 0
    while i < len(problem.current.requests):
        for site in bodies.text_sites(problem.current.requests[i].body):
            while True:
                body = problem.current.requests[i].body
                found = await first_accepted(problem, (
                    with_request(problem.current, i, body=bodies.with_text(body, site, t))
                    for t in bodies.shorter_texts(bodies.text_at(body, site))))
                if not found:
                    break
        i += 1


class _Image:
    """One image followed through re-renders: its sha changes with every accepted one."""

    def __init__(self, problem: Problem, sha256: str) -> None:
        self.problem, self.sha256 = problem, sha256

    def recipe(self) -> ImageRecipe | None:
        media = self.problem.current.media.get(self.sha256)
        return images.recipe_of(media) if media is not None else None

    async def consider(self, recipe: ImageRecipe) -> bool:
        built = images.rerendered(self.problem.current, self.sha256, recipe)
        if built is None or not await self.problem.consider(built[0]):
            return False
        self.sha256 = built[1]
        return True


async def shrink_images(problem: Problem) -> None:
    """Each re-renderable image, largest first: both sides down the 32-pixel grid
    (smallest first, then bisecting), then width alone, then height alone."""
    for sha in sorted(problem.current.media, key=lambda h: -len(problem.current.media[h].data)):
        image = _Image(problem, sha)
        for axis in ("both", "width", "height"):
            recipe = image.recipe()
            if recipe is None:
                break
            w, h = recipe.width_px, recipe.height_px
            ladder = (images.size_ladder(w, h) if axis == "both" else
                      [(s, h) for s in images.smaller_sides(w)] if axis == "width" else
                      [(w, s) for s in images.smaller_sides(h)])
            await _bisect(ladder, lambda size, r=recipe: image.consider(
                replace(r, width_px=size[0], height_px=size[1])))


async def _bisect(ladder: list[Any], accepts: Callable[[Any], Awaitable[bool]]) -> None:
    """Find the smallest ladder step that still fails, assuming monotonicity: the
    smallest first, then halve the gap between known-bad and known-good."""
    bad, good = -1, len(ladder)  # `good` (the current size) is known to fail
    while good - bad > 1:
        mid = 0 if bad == -1 else (bad + good) // 2
        if await accepts(ladder[mid]):
            good = mid
        else:
            bad = mid


async def simplify_images(problem: Problem) -> None:
    """Each re-renderable image as a plain PNG RGB, then with flat content."""
    for sha in sorted(problem.current.media):
        image = _Image(problem, sha)
        for step in images.PLAINER_STEPS:
            recipe = image.recipe()
            if recipe is None:
                break
            plainer = replace(recipe, **step)
            if plainer != recipe:
                await image.consider(plainer)
