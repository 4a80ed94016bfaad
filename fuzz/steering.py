"""Steering by server-side signals: keep the scenarios that reached a server state no
earlier scenario reached, and make new scenarios by mutating and recombining them.

Generation alone reaches a preemption, a multimodal-cache hit under concurrency or a
tool-parser traceback only by luck. Greybox fuzzers keep what reached new coverage and
spend effort around it; here coverage is the server's own features (`fuzz.signals`).
The campaign interleaves `Steering.next(rng)` with fresh Hypothesis scenarios and
reports every scenario's features back through `observe`.

Mutations are small named functions `(scenario, rng) -> Scenario | None` (None: does
not apply). They work at the level the server's states respond to: how many requests
arrive together and when (duplicate one, double them all, compress or stretch the
schedule, align two arrivals), what they share (identical bodies hit the prefix and
multimodal caches; swapped images hit them crosswise), how long they hold the KV cache
(longer outputs), whether the client hangs up (aborts), and splicing two corpus
scenarios into one. Every result is a valid Scenario: requests sorted by offset and
renumbered `r0, r1, ...`, only the media they use, at most `max_requests` requests.

Pure and deterministic given the `random.Random` passed in.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from fuzz.model import MEDIA_SCHEME, Media, RequestSpec, Scenario
from fuzz.signals import state_rows

__all__ = ["MUTATIONS", "CorpusEntry", "Mutant", "Steering", "splice"]

MAX_REQUESTS = 64
MAX_SPREAD_MS = 10_000.0
MAX_OUTPUT_TOKENS = 512
Mutation = Callable[[Scenario, random.Random], "Scenario | None"]


def _tag(spec: RequestSpec, op: str) -> RequestSpec:
    tag = f"steer:{op}"
    return spec if tag in spec.tags else replace(spec, tags=spec.tags + (tag,))


def _rebuild(requests: Sequence[RequestSpec], media: Mapping[str, Media], rng: random.Random,
             max_requests: int = MAX_REQUESTS) -> Scenario | None:
    """A valid Scenario from `requests`: at most `max_requests` (extras dropped at
    random), sorted by offset, renumbered, with only the media they use."""
    specs = list(requests)
    if not specs:
        return None
    while len(specs) > max_requests:
        specs.pop(rng.randrange(len(specs)))
    specs.sort(key=lambda s: s.offset_ms)  # stable: equal offsets keep their order
    renamed = tuple(replace(s, id=f"r{i}", offset_ms=round(min(max(s.offset_ms, 0.0),
                                                                   MAX_SPREAD_MS), 1))
                    for i, s in enumerate(specs))
    used = {h for s in renamed for h in s.media_refs()}
    return Scenario(requests=renamed, media={h: m for h, m in media.items() if h in used})


def duplicate_request(s: Scenario, rng: random.Random) -> Scenario | None:
    """Send one request again, 1-7 more times, at or just after its own offset: the
    same prompt and images in flight together (prefix and multimodal caches, races)."""
    spec = s.requests[rng.randrange(len(s.requests))]
    copies = rng.choice((1, 1, 2, 3, 7))
    jitters_ms = (0.0, 0.0, 1.0, 10.0, 50.0, 200.0)
    extra = [_tag(replace(spec, offset_ms=spec.offset_ms + rng.choice(jitters_ms)), "duplicate")
             for _ in range(copies)]
    return _rebuild([*s.requests, *extra], s.media, rng)


def raise_concurrency(s: Scenario, rng: random.Random) -> Scenario | None:
    """Every request twice, at the same offsets: twice the load, same shape."""
    return _rebuild([*s.requests, *(_tag(r, "concurrency") for r in s.requests)], s.media, rng)


def compress_timing(s: Scenario, rng: random.Random) -> Scenario | None:
    """The schedule squeezed (x0.5 down to a single burst): more requests in flight."""
    if all(r.offset_ms == 0 for r in s.requests):
        return None
    factor = rng.choice((0.0, 0.1, 0.25, 0.5))
    return _rebuild([_tag(replace(r, offset_ms=r.offset_ms * factor), "compress")
                     for r in s.requests], s.media, rng)


def stretch_timing(s: Scenario, rng: random.Random) -> Scenario | None:
    """The schedule spread out (a burst becomes a ramp): requests join a running batch."""
    if all(r.offset_ms == 0 for r in s.requests):
        if len(s.requests) < 2:
            return None
        gap = rng.choice((20.0, 100.0, 500.0))
        timed = [replace(r, offset_ms=i * gap) for i, r in enumerate(s.requests)]
    else:
        factor = rng.choice((1.5, 2.0, 4.0))
        timed = [replace(r, offset_ms=r.offset_ms * factor) for r in s.requests]
    return _rebuild([_tag(r, "stretch") for r in timed], s.media, rng)


def align_requests(s: Scenario, rng: random.Random) -> Scenario | None:
    """Two requests that arrived apart now arrive at the same instant."""
    offsets = sorted({r.offset_ms for r in s.requests})
    if len(offsets) < 2:
        return None
    i, j = rng.sample(range(len(s.requests)), 2)
    if s.requests[i].offset_ms == s.requests[j].offset_ms:
        return None
    moved = list(s.requests)
    moved[j] = _tag(replace(moved[j], offset_ms=moved[i].offset_ms), "align")
    return _rebuild(moved, s.media, rng)


def drop_requests(s: Scenario, rng: random.Random) -> Scenario | None:
    """Up to half the requests removed: the rest stands out, or is what mattered."""
    if len(s.requests) < 2:
        return None
    kept = list(s.requests)
    for _ in range(rng.randint(1, len(kept) // 2)):
        kept.pop(rng.randrange(len(kept)))
    return _rebuild(kept, s.media, rng)


def _media_paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], str]]:
    """(path, sha256) of every inline-media placeholder in a body, in order."""
    if isinstance(value, str):
        return [(path, value[len(MEDIA_SCHEME):])] if value.startswith(MEDIA_SCHEME) else []
    if isinstance(value, Mapping):
        return [p for k in value for p in _media_paths(value[k], (*path, k))]
    if isinstance(value, (list, tuple)):
        return [p for i, v in enumerate(value) for p in _media_paths(v, (*path, i))]
    return []


def _set_path(value: Any, path: tuple[Any, ...], leaf: Any) -> Any:
    """A copy of `value` with the leaf at `path` replaced (untouched branches shared:
    bodies are never mutated in place)."""
    if not path:
        return leaf
    key, rest = path[0], path[1:]
    if isinstance(value, Mapping):
        return {**value, key: _set_path(value[key], rest, leaf)}
    items = list(value)
    items[key] = _set_path(items[key], rest, leaf)
    return tuple(items) if isinstance(value, tuple) else items


def swap_images(s: Scenario, rng: random.Random) -> Scenario | None:
    """Two requests trade one image each: a cached image arrives in another prompt."""
    refs = [(i, path, sha) for i, r in enumerate(s.requests) for path, sha in _media_paths(r.body)]
    pairs = [(a, b) for a in range(len(refs)) for b in range(a + 1, len(refs))
             if refs[a][0] != refs[b][0] and refs[a][2] != refs[b][2]]
    if not pairs:
        return None
    (i, pi, hi), (j, pj, hj) = (refs[k] for k in pairs[rng.randrange(len(pairs))])
    specs = list(s.requests)
    for k, path, sha in ((i, pi, hj), (j, pj, hi)):
        body = _set_path(specs[k].body, path, MEDIA_SCHEME + sha)
        specs[k] = _tag(replace(specs[k], body=body), "swap_images")
    return _rebuild(specs, s.media, rng)


def lengthen_outputs(s: Scenario, rng: random.Random) -> Scenario | None:
    """Some requests decode much longer and ignore EOS: they hold KV blocks longer,
    which is what preemption needs."""
    candidates = [i for i, r in enumerate(s.requests) if isinstance(r.body, Mapping)
                  and isinstance(r.body.get("max_tokens", 16), int)
                  and not isinstance(r.body.get("max_tokens", 16), bool)
                  and r.body.get("max_tokens", 16) > 0]
    if not candidates:
        return None
    chosen = [i for i in candidates if rng.random() < 0.5] or [rng.choice(candidates)]
    specs = list(s.requests)
    for i in chosen:
        body = dict(specs[i].body)
        current = body.get("max_tokens", 16)
        body["max_tokens"] = min(max(current * 4, 64), MAX_OUTPUT_TOKENS)
        body.pop("max_completion_tokens", None)
        body["ignore_eos"] = True
        specs[i] = _tag(replace(specs[i], body=body), "lengthen")
    return _rebuild(specs, s.media, rng)


def disconnect_streams(s: Scenario, rng: random.Random) -> Scenario | None:
    """One request streams and the client hangs up after a few chunks: an abort in
    the middle of whatever else is running."""
    candidates = [i for i, r in enumerate(s.requests) if isinstance(r.body, Mapping)]
    if not candidates:
        return None
    i = rng.choice(candidates)
    spec = s.requests[i]
    body = spec.body if spec.stream else {**spec.body, "stream": True}
    specs = list(s.requests)
    specs[i] = _tag(replace(spec, body=body, disconnect_after_chunks=rng.choice((0, 1, 2, 4, 8))),
                    "disconnect")
    return _rebuild(specs, s.media, rng)


def splice(a: Scenario, b: Scenario, rng: random.Random) -> Scenario | None:
    """Some requests of `a` and some of `b`, on their own schedules, in one scenario:
    two states' causes running together."""
    def some(s: Scenario) -> list[RequestSpec]:
        k = rng.randint(1, len(s.requests))
        return [s.requests[i] for i in sorted(rng.sample(range(len(s.requests)), k))]

    shift = rng.choice((0.0, 0.0, 100.0, 500.0))
    moved = [_tag(replace(r, offset_ms=r.offset_ms + shift), "splice") for r in some(b)]
    mixed = [*some(a), *moved]
    return _rebuild(mixed, {**a.media, **b.media}, rng)


MUTATIONS: dict[str, Mutation] = {
    "duplicate": duplicate_request, "concurrency": raise_concurrency,
    "compress": compress_timing, "stretch": stretch_timing, "align": align_requests,
    "drop": drop_requests, "swap_images": swap_images, "lengthen": lengthen_outputs,
    "disconnect": disconnect_streams,
}


@dataclass(frozen=True)
class CorpusEntry:
    """A kept scenario: every feature it reached, the ones nobody had reached before,
    where it came from ("generated" or the mutation ops), and which observation it was."""

    scenario: Scenario
    features: frozenset[str]
    new_features: frozenset[str]
    origin: str
    observation: int


@dataclass(frozen=True)
class Mutant:
    """A proposed scenario, the ops that made it and its parents' observation numbers."""

    scenario: Scenario
    ops: tuple[str, ...]
    parents: tuple[int, ...]

    @property
    def origin(self) -> str:
        """What to pass to `Steering.observe(origin=...)` so that ops get credit."""
        return "+".join(self.ops)


class Steering:
    """The corpus and the feature counts; see the module docstring.

    `seen` preloads counts (a resumed campaign's, rebuilt from its journal) so that
    states reached before are not new again. The corpus holds at most `max_entries`
    scenarios and `max_media_bytes` of distinct media; past either, the entries whose
    features are the most common go first."""

    def __init__(self, *, max_entries: int = 64, max_requests: int = MAX_REQUESTS,
                 max_media_bytes: int = 256 * 2**20, splice_percent: int = 20,
                 seen: Mapping[str, int] | None = None) -> None:
        if max_entries < 1 or max_requests < 1 or not 0 <= splice_percent <= 100:
            raise ValueError("max_entries and max_requests must be >= 1, splice_percent 0..100")
        self.max_entries, self.max_requests = max_entries, max_requests
        self.max_media_bytes = max_media_bytes
        self.splice_percent = splice_percent
        self.counts: Counter[str] = Counter(seen or {})
        self.first_seen: dict[str, int] = {f: 0 for f in self.counts}
        self.entries: list[CorpusEntry] = []
        self.picks: list[int] = []
        self.observations = 0
        self.tried: Counter[str] = Counter()
        self.productive: Counter[str] = Counter()

    def observe(self, scenario: Scenario, features: Iterable[str], *,
                origin: str = "generated") -> frozenset[str]:
        """Count the features one run of `scenario` reached; keep it if any was new.
        Returns the new ones."""
        self.observations += 1
        reached = frozenset(features)
        new = frozenset(f for f in reached if self.counts[f] == 0)
        self.counts.update(reached)
        for f in sorted(new):
            self.first_seen[f] = self.observations
        for op in origin.split("+"):
            self.tried[op] += 1
            if new:
                self.productive[op] += 1
        if new:
            self.entries.append(CorpusEntry(scenario, reached, new, origin, self.observations))
            self.picks.append(0)
            while len(self.entries) > 1 and (len(self.entries) > self.max_entries
                                             or self.media_bytes() > self.max_media_bytes):
                self._evict()
        return new

    def media_bytes(self) -> int:
        """Bytes of distinct media held by the corpus."""
        sizes = {h: len(m.data) for e in self.entries for h, m in e.scenario.media.items()}
        return sum(sizes.values())

    def _rarity(self, entry: CorpusEntry) -> float:
        return sum(1.0 / max(self.counts[f], 1) for f in sorted(entry.features))

    def _evict(self) -> None:
        """Drop the entry whose features are the most common (the oldest on ties)."""
        worst = min(range(len(self.entries)),
                    key=lambda i: (self._rarity(self.entries[i]), self.entries[i].observation))
        del self.entries[worst]
        del self.picks[worst]

    def _pick(self, rng: random.Random) -> int:
        """An entry, favouring rare features and entries picked less often."""
        weights = [self._rarity(e) / math.sqrt(1 + p) for e, p in zip(self.entries, self.picks)]
        i = rng.choices(range(len(self.entries)), weights=weights)[0]
        self.picks[i] += 1
        return i

    def _mutate(self, s: Scenario, rng: random.Random) -> tuple[Scenario, str] | None:
        names = sorted(MUTATIONS)
        for _ in range(8):
            name = rng.choice(names)
            out = MUTATIONS[name](s, rng)
            if out is not None:
                return out, name
        return None

    def propose(self, rng: random.Random) -> Mutant | None:
        """A mutant of a corpus entry (or a splice of two), 1-3 ops stacked; None
        while the corpus is empty."""
        if not self.entries:
            return None
        first = self._pick(rng)
        current, ops, parents = self.entries[first].scenario, [], [self.entries[first].observation]
        if len(self.entries) >= 2 and rng.randrange(100) < self.splice_percent:
            other = self._pick(rng)
            spliced = splice(current, self.entries[other].scenario, rng)
            if spliced is not None:
                current, ops = spliced, ["splice"]
                parents.append(self.entries[other].observation)
        for _ in range(rng.choice((1, 1, 2, 3))):
            done = self._mutate(current, rng)
            if done is not None:
                current, op = done
                ops.append(op)
        if len(current.requests) > self.max_requests:
            current = _rebuild(current.requests, current.media, rng, self.max_requests) or current
        return Mutant(current, tuple(ops) or ("none",), tuple(parents))

    def next(self, rng: random.Random) -> Scenario | None:
        """The next steered scenario, or None while the corpus is empty."""
        mutant = self.propose(rng)
        return None if mutant is None else mutant.scenario

    def rows(self) -> list[dict[str, Any]]:
        """The server states reached so far, as report rows (`fuzz.signals.state_rows`),
        first seen given as the observation number."""
        return state_rows(self.counts, self.first_seen)

    def stats(self) -> dict[str, Any]:
        """Corpus size and, per op, how many observed scenarios it made and how many of
        those reached a new state."""
        return {"observations": self.observations, "corpus": len(self.entries),
                "features": len(+self.counts),
                "ops": {op: {"tried": self.tried[op], "new_states": self.productive[op]}
                        for op in sorted(self.tried)}}
