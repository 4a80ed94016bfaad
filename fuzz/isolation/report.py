"""The natural-variance table a person reads before trusting the differential oracle:
per batch size, how often greedy answers diverged, where, by how much logprobs moved
and which leads were overturned; then the bar and how much of an answer it can judge
(on a tiny random model almost every lead is a near tie, so the last lines say how
blind the oracle is there). Plain text, for `bench/variance.py` and a CLI."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from fuzz.isolation.noise import NoiseModel, NoiseSample

UNLISTED = "\0"  # a token no server lists: its lead is the bound for any unlisted token


def _positions(positions: tuple[int, ...]) -> str:
    if not positions:
        return "-"
    text = ",".join(str(p) for p in sorted(positions)[:8])
    return text + ("…" if len(positions) > 8 else "")


def variance_table(noise: NoiseModel, samples: Sequence[NoiseSample]) -> str:
    """The table and the bar's derivation, as lines of text."""
    rows = [("batch", "runs", "diverged", "rate", "first diverging positions",
             "max |Δlogprob|", "max flipped lead")]
    for b in noise.batches:
        rows.append(("alone" if b.batch_size == 1 else str(b.batch_size), str(b.runs),
                     str(b.diverged), f"{b.divergence_rate:.0%}", _positions(b.first_positions),
                     f"{b.max_logprob_delta:.4f}",
                     f"{b.max_flip_margin:.4f}" if b.diverged else "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i in (0, 4) else c.rjust(w)
                       for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    refs: dict[str, NoiseSample] = {}
    for s in samples:
        if s.batch_size == 1:
            refs.setdefault(s.probe, s)
    steps = [st for s in refs.values() for st in s.answer.steps]
    t = noise.margin_threshold
    lines += ["",
              f"margin threshold: {t:.4f} nats = max(floor {noise.min_margin:g}, safety "
              f"{noise.safety:g} x max(flipped lead {noise.max_flip_margin:.4f}, "
              f"2 x max |Δlogprob| {noise.max_logprob_delta:.4f}))"]
    if steps:
        any_flip = sum(1 for st in steps if st.margin > t)
        far_flip = sum(1 for st in steps if st.lead_over(UNLISTED) > t)
        lines += [f"reference positions where any flip is flagged (runner-up trails by more): "
                  f"{any_flip} of {len(steps)} ({any_flip / len(steps):.0%})",
                  f"reference positions where a flip to an unlisted token is flagged: "
                  f"{far_flip} of {len(steps)} ({far_flip / len(steps):.0%})",
                  f"median lead of the references over the runner-up: "
                  f"{statistics.median(st.margin for st in steps):.4f} nats, over the last "
                  f"listed: {statistics.median(st.lead_over(UNLISTED) for st in steps):.4f}"]
    return "\n".join(lines)
