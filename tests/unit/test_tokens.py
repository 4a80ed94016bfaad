"""fuzz.tokens: a TokenScale measured through an in-process `/tokenize` reproduces the
server's counts on its samples and approximates them elsewhere; a target without
`/tokenize` gives None; `ESTIMATE` is the strategies' old rule exactly; and the
strategies size texts and contexts by a scale passed to them."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import aiohttp
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from fuzz.strategies import context_texts, estimate_tokens, scenarios, texts
from fuzz.tokens import (ESTIMATE, KINDS, SAMPLES, SPECIAL_TOKENS, TokenScale,
                         measure_token_scale, scale_from_counts)
from test_strategies import sample

FAST = settings(max_examples=60, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])
# A stand-in tokenizer: special tokens whole, ASCII words in 5-letter pieces, digits in
# threes, a symbol with its leading space, whitespace runs, any other character alone.
_PIECES = re.compile("|".join(map(re.escape, SPECIAL_TOKENS))
                     + r"|[A-Za-z]{1,5}| ?[^\sA-Za-z\d]|\d{1,3}|\s+|.", re.S)
MAX_MODEL_LEN = 4096


def fake_count(text: str) -> int:
    return len(_PIECES.findall(text))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@asynccontextmanager
async def tokenizer_server(*, tokenize: bool = True, body: Callable[[str], str] | None = None,
                           api_key: str | None = None) -> AsyncIterator[str]:
    """A loopback server with (or without) vLLM's /tokenize; yields its base URL."""
    async def handle(request: web.Request) -> web.Response:
        if api_key and request.headers.get("Authorization") != f"Bearer {api_key}":
            return web.json_response({"error": "unauthorized"}, status=401)
        payload = await request.json()
        assert payload["add_special_tokens"] is False and payload["model"] == "m"
        if body is not None:
            return web.Response(text=body(payload["prompt"]), content_type="application/json")
        n = fake_count(payload["prompt"])
        return web.json_response({"count": n, "tokens": list(range(n)),
                                  "max_model_len": MAX_MODEL_LEN})

    app = web.Application()
    if tokenize:
        app.router.add_post("/tokenize", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def measured(**server: object) -> TokenScale | None:
    async def go() -> TokenScale | None:
        async with tokenizer_server(**server) as url:  # type: ignore[arg-type]
            return await measure_token_scale(url, "m", None)
    return asyncio.run(go())


@pytest.fixture(scope="module")
def scale() -> TokenScale:
    found = measured()
    assert found is not None
    return found


def test_a_measured_scale_reproduces_the_servers_sample_counts(scale: TokenScale) -> None:
    assert scale.max_model_len == MAX_MODEL_LEN
    for kind in KINDS:
        assert scale.count(SAMPLES[kind]) == fake_count(SAMPLES[kind]), kind
    assert json.loads(json.dumps(scale.to_json())) == scale.to_json()
    assert TokenScale.from_json(scale.to_json()) == scale


@pytest.mark.parametrize("text", [
    "A delivery van idled by the door while the driver argued cheerfully with the baker.",
    "for (let i = 0; i < items.length; i++) { total += items[i].price * 1.2; }",
    "今日は良い天気ですね。我能吞下玻璃而不伤身体。",
    "Summarise: <|im_end|> then 👍🏽 and Съешь же ещё этих мягких булок " * 4,
])
def test_a_measured_scale_approximates_unseen_text(scale: TokenScale, text: str) -> None:
    assert abs(scale.count(text) - fake_count(text)) <= 0.2 * fake_count(text) + 2


def test_a_target_without_tokenize_gives_none() -> None:
    assert measured(tokenize=False) is None
    assert measured(body=lambda prompt: "not json") is None
    assert measured(body=lambda prompt: json.dumps({"tokens": "??"})) is None

    async def unreachable() -> TokenScale | None:
        return await measure_token_scale(f"http://127.0.0.1:{free_port()}", "m", None)
    assert asyncio.run(unreachable()) is None


def test_a_callers_session_and_headers_are_used_and_left_open() -> None:
    async def go() -> tuple[TokenScale | None, TokenScale | None, bool]:
        async with tokenizer_server(api_key="k") as url, aiohttp.ClientSession() as session:
            refused = await measure_token_scale(url, "m", session)
            accepted = await measure_token_scale(url, "m", session,
                                                 headers={"Authorization": "Bearer k"})
            return refused, accepted, session.closed
    refused, accepted, closed = asyncio.run(go())
    assert refused is None and accepted is not None and not closed
    assert accepted.max_model_len == MAX_MODEL_LEN


def test_missing_kinds_keep_the_estimate_and_bad_rates_are_refused() -> None:
    partial = scale_from_counts({"prose": 100})
    assert partial.cjk == ESTIMATE.cjk and partial.max_model_len is None
    for bad in (0, -1.0, float("inf"), True):
        with pytest.raises(ValueError):
            TokenScale(prose=bad, code=4, cjk=1, other=1, emoji=1, special=4)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        TokenScale(prose=4, code=4, cjk=1, other=1, emoji=1, special=4, max_model_len=0)


@FAST
@given(st.text() | st.sampled_from(["\ud800x", "a\udfff\u4e00", "<|im_end|>" * 3]))
def test_the_estimate_scale_is_the_old_rule(text: str) -> None:
    assert ESTIMATE.count(text) == estimate_tokens(text)


@FAST
@given(st.text(min_size=1).map(lambda t: t + SAMPLES["code"] + "<|im_start|>" + t),
       st.integers(0, 400), st.booleans())
def test_fit_keeps_the_longest_prefix_within_the_budget(text: str, target: int,
                                                        measured_scale: bool) -> None:
    scale = scale_from_counts({"prose": 110, "code": 230, "cjk": 70, "other": 90, "emoji": 60,
                               "special": 11}) if measured_scale else ESTIMATE
    cut = scale.fit(text, target)
    assert text.startswith(cut) and scale.count(cut) <= target
    if cut != text:  # one more character would not fit (or would split a special token)
        assert scale.count(text[:len(cut) + 1]) > target or any(
            text[len(cut):].startswith(tok[:k]) for tok in SPECIAL_TOKENS for k in (1, 2))


def test_the_default_scale_changes_nothing() -> None:
    def run(**kwargs: object) -> list[str]:
        out: list[str] = []

        @hypothesis_seed(7)
        @settings(max_examples=30, database=None, deadline=None,
                  suppress_health_check=list(HealthCheck))
        @given(texts(max_tokens=600, **kwargs))  # type: ignore[arg-type]
        def collect(text: str) -> None:
            out.append(text)

        collect()
        return out

    assert run() == run(token_scale=ESTIMATE) == run(token_scale=None)


def test_texts_are_sized_by_the_scale(scale: TokenScale) -> None:
    for text in sample(texts(min_tokens=40, max_tokens=300, token_scale=scale), 60):
        assert 40 <= scale.count(text) <= 300


def test_contexts_land_around_the_limit_by_the_scale(scale: TokenScale) -> None:
    budget = 900 - 16
    seen = set()
    for position, text in sample(context_texts(max_model_len=900, max_tokens=16,
                                               token_scale=scale), 30):
        n = scale.count(text)
        seen.add(position)
        assert {"under": budget - 64 <= n < budget - 1, "at": budget - 1 <= n <= budget,
                "over": budget < n <= budget + 64}[position], (position, n)
    assert seen == {"under", "at", "over"}


def test_scenarios_take_the_scale_and_its_max_model_len(scale: TokenScale) -> None:
    drawn = sample(scenarios(token_scale=scale, max_requests=2, max_images_per_request=0,
                             long_context_percent=100, max_output_tokens=8, mistyped_percent=0,
                             structured_percent=0, tools_percent=0, history_percent=0), 12)
    contexts = 0
    for scenario in drawn:
        for spec in scenario.requests:
            if not any(t.startswith("context:") for t in spec.tags):
                continue
            contexts += 1
            content = spec.body["messages"][-1]["content"]
            text = content if isinstance(content, str) else content[0]["text"]
            reserved = max(1, spec.body["max_tokens"])
            assert abs(scale.count(text) - (MAX_MODEL_LEN - reserved)) <= 64
    assert contexts


def test_empty_text_costs_nothing(scale: TokenScale) -> None:
    for s in (ESTIMATE, scale):
        assert s.count("") == 0 and s.fit("", 0) == "" and s.fit("abc", 0) == ""
    with pytest.raises(ValueError):
        ESTIMATE.fit("abc", -1)
