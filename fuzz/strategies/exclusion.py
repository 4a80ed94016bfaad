"""Features a user no longer wants generated (`scenarios(exclude_features=...)`).

Someone hunting past a known bug wants the fuzzer to stop tripping over it: exclude
its feature tag (`sampling:seed`) or a whole family (`image:format:gif`,
`structured_outputs`) and no request carrying such a tag is generated. An entry
excludes the tag it names and every tag below it (`sampling:seed` also removes
`sampling:seed:bound`); an entry ending in ":" is a plain prefix.

Exclusion acts where each feature is decided, so nothing is drawn and then thrown
away: a flip for an excluded feature never comes up, an excluded option is not
among the choices. Tags that follow from a drawn value (an image's size class, a
prompt's length bucket, a schema's keywords) are met by drawing that unit again a
few times, then doing without it."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import TypeVar

from fuzz.strategies._common import StrategyArgumentError

T = TypeVar("T")

# First segment of every tag the strategies emit.
TAG_ROOTS: frozenset[str] = frozenset({
    "images", "image", "system", "history", "context", "text", "max_tokens", "stream",
    "sampling", "structured", "structured_outputs", "schema", "tools", "extra", "traffic",
    "pair", "request", "disconnect"})
REDRAWS = 4  # attempts at a unit whose tags follow from what was drawn


@dataclass(frozen=True)
class Exclusion:
    """A validated set of excluded tags and tag prefixes (empty: exclude nothing)."""

    entries: frozenset[str] = frozenset()

    @classmethod
    def of(cls, features: Exclusion | Collection[str] | None) -> Exclusion:
        """Validate `exclude_features`: a collection (not a lone string) of tags whose
        first segment is one the strategies emit."""
        if features is None:
            return NOTHING
        if isinstance(features, Exclusion):
            return features
        if isinstance(features, (str, bytes)) or not isinstance(features, Collection):
            raise StrategyArgumentError(
                f"exclude_features must be a collection of tags, got {features!r}")
        for entry in features:
            if not isinstance(entry, str) or not entry.strip(":"):
                raise StrategyArgumentError(f"exclude_features entry {entry!r} is not a tag")
            if entry.split(":", 1)[0] not in TAG_ROOTS:
                raise StrategyArgumentError(
                    f"exclude_features entry {entry!r} names no generated feature "
                    f"(tags start with one of {sorted(TAG_ROOTS)})")
        return cls(frozenset(features))

    def __bool__(self) -> bool:
        return bool(self.entries)

    def excludes(self, tag: str) -> bool:
        for entry in self.entries:
            if tag == entry or tag.startswith(entry if entry.endswith(":") else entry + ":"):
                return True
        return False

    def allows(self, tag: str) -> bool:
        return not self.entries or not self.excludes(tag)

    def allows_all(self, tags: Iterable[str]) -> bool:
        return not self.entries or not any(self.excludes(t) for t in tags)

    def percent(self, percent: int, tag: str) -> int:
        """`percent`, or 0 when `tag` is excluded: the gate for a `Dice` flip."""
        return percent if self.allows(tag) else 0

    def keep(self, options: Iterable[T], tags: Callable[[T], Iterable[str]]) -> tuple[T, ...]:
        """The options none of whose tags is excluded, in order."""
        return tuple(o for o in options if self.allows_all(tags(o)))

    def require(self, options: tuple[T, ...], what: str) -> tuple[T, ...]:
        """`options`, which must not be empty: some dimensions cannot be left out."""
        if not options:
            raise StrategyArgumentError(f"exclude_features={sorted(self.entries)} leaves no {what}")
        return options


NOTHING = Exclusion()
