"""The natural-variance model: derived from samples, its bar, its JSON form."""

from __future__ import annotations

import json
import math

import pytest
from test_isolation_tokens import answer

from fuzz.isolation.noise import (DEFAULT_MIN_MARGIN, NoiseModel, NoiseSample, derive_noise,
                                  margin_threshold)
from fuzz.isolation.tokens import TokenAnswer, TokenStep


def samples() -> list[NoiseSample]:
    ref = answer("a b c d", [-0.1, -0.2, -0.3, -0.4], lead=0.02)
    wobble = answer("a b c d", [-0.11, -0.2, -0.3, -0.4], lead=0.02)
    flipped = answer("a x y z", [-0.13, -0.2, -0.3, -0.4])
    other = answer("q r s", lead=3.0)
    return [NoiseSample("p", 1, ref), NoiseSample("p", 1, wobble), NoiseSample("q", 1, other),
            NoiseSample("p", 2, wobble), NoiseSample("p", 4, flipped),
            NoiseSample("q", 4, other), NoiseSample("q", 8, other)]


def test_derive() -> None:
    noise = derive_noise(samples())
    assert noise.probes == 2
    assert [b.batch_size for b in noise.batches] == [1, 2, 4, 8]
    alone, four = noise.batch(1), noise.batch(4)
    assert (alone.runs, alone.diverged) == (1, 0)  # the references are not measurements
    assert (four.runs, four.diverged, four.first_positions) == (2, 1, (1,))
    assert four.divergence_rate == 0.5
    assert four.max_flip_margin == pytest.approx(0.02)
    assert noise.max_logprob_delta == pytest.approx(0.03)
    assert noise.margin_threshold == pytest.approx(2.0 * max(0.02, 2 * 0.03))
    assert noise.batch(16) is None


def test_the_bar_has_a_floor_and_a_safety_factor() -> None:
    assert margin_threshold(0.0, 0.0) == DEFAULT_MIN_MARGIN
    assert margin_threshold(0.1, 0.0, safety=3.0) == pytest.approx(0.6)
    assert margin_threshold(0.0, 0.5, min_margin=0.0, safety=1.0) == 0.5


def test_a_run_that_outlives_its_reference_sets_no_bar() -> None:
    ref = answer("a b")
    noise = derive_noise([NoiseSample("p", 1, ref), NoiseSample("p", 2, answer("a b c"))])
    assert noise.batch(2).diverged == 1 and noise.max_flip_margin == 0.0


def test_refuses_probes_without_an_alone_sample_and_bad_settings() -> None:
    with pytest.raises(ValueError, match="alone"):
        derive_noise([NoiseSample("p", 2, answer("a"))])
    with pytest.raises(ValueError):
        derive_noise(samples(), safety=0.5)
    with pytest.raises(ValueError):
        NoiseModel(margin_threshold=-1.0)


def test_json_round_trip() -> None:
    noise = derive_noise(samples())
    assert NoiseModel.from_json(json.loads(json.dumps(noise.to_json()))) == noise
    inf = NoiseModel(margin_threshold=math.inf, max_flip_margin=math.inf)
    text = json.dumps(inf.to_json(), allow_nan=False)  # strict JSON: inf is written null
    assert NoiseModel.from_json(json.loads(text)) == inf
    s = samples()[4]
    assert NoiseSample.from_json(json.loads(json.dumps(s.to_json()))) == s
    with pytest.raises(ValueError, match="format_version"):
        NoiseModel.from_json({**noise.to_json(), "format_version": 99})


def test_a_flip_past_the_runner_up_counts_its_full_lead() -> None:
    top = (("a", -1.0), ("b", -1.01), ("c", -1.4))
    ref = TokenAnswer((TokenStep("a", -1.0, top),))
    third = TokenAnswer((TokenStep("c", -1.0, (("c", -1.0), ("a", -1.3))),))
    noise = derive_noise([NoiseSample("p", 1, ref), NoiseSample("p", 2, third)])
    assert noise.max_flip_margin == pytest.approx(0.4)
