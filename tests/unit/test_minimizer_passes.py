"""The content passes: images (fewer, smaller on the 32-pixel grid, plainer, media
kept consistent), text, sampling, streaming, schema and tools - each against a fake
replay that fails only while the feature it depends on is still there."""

from __future__ import annotations

import asyncio
from typing import Any

from fuzz.media import ImageRecipe, render
from fuzz.minimize import Budget, minimize
from fuzz.minimize import bodies, images
from fuzz.model import Failure, RequestSpec, Scenario, Trace, media_url

SIG = "server_error|500|boom"


def image(w: int, h: int, *, fmt: str = "JPEG", content: str = "noise", seed: int = 1):
    return render(ImageRecipe(width_px=w, height_px=h, mode="RGB", format=fmt, content=content, seed=seed))


def chat(parts: list[Any], **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "system", "content": "be brief"},
                         {"role": "user", "content": parts}], "max_tokens": 4, **extra}


def image_part(media) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": media_url(media.sha256)}}


def fake(condition):
    async def replay(s: Scenario):
        return Trace(requests=()), [Failure(kind="x", signature=SIG, message="m")] if condition(s) else []
    return replay


def minimized(s: Scenario, condition) -> Scenario:
    result = asyncio.run(minimize(s, SIG, fake(condition), budget=Budget(max_replays=400), final_runs=1))
    assert result.final.hits == 1 and not result.budget_exhausted
    return result.scenario


def recipes(s: Scenario) -> list[ImageRecipe]:
    return [ImageRecipe.from_json(s.media[h].recipe) for h in s.requests[0].media_refs()]


def test_images_shrink_on_the_grid_and_media_stay_consistent():
    big, other = image(353, 225), image(64, 64, seed=2)
    s = Scenario(requests=(
        RequestSpec(id="r0", body=chat([image_part(big), image_part(other), {"type": "text", "text": "hi"}])),
        RequestSpec(id="r1", body=chat([image_part(big)]), offset_ms=10.0)),
        media={big.sha256: big, other.sha256: other})

    def fails(s: Scenario) -> bool:  # an image whose width is one past a grid line
        return any(ImageRecipe.from_json(s.media[h].recipe).width_px % 32 == 1
                   for r in s.requests for h in r.media_refs())

    out = minimized(s, fails)
    assert len(out.requests) == 1
    (recipe,) = recipes(out)
    assert (recipe.width_px, recipe.height_px) == (1, 1)  # 353 = 11*32+1 -> 1; 225 = 7*32+1 -> 1
    assert (recipe.format, recipe.content) == ("PNG", "flat")
    assert set(out.media) == set(out.requests[0].media_refs())  # no stale media, no dangling refs
    assert big.sha256 not in out.media


def test_size_ladder_keeps_the_remainder_mod_32():
    assert images.smaller_sides(100) == [4, 36, 68]
    assert images.smaller_sides(64) == [32]
    assert images.smaller_sides(31) == []
    ladder = images.size_ladder(224, 96)
    assert ladder[0] == (32, 32) and all(w % 32 == 0 and h % 32 == 0 for w, h in ladder)
    assert (224, 96) not in ladder


def test_image_size_threshold_is_found_by_bisection():
    big = image(1024, 64, fmt="PNG", content="flat")
    s = Scenario(requests=(RequestSpec(id="r0", body=chat([image_part(big)])),), media={big.sha256: big})
    out = minimized(s, lambda s: recipes(s) != [] and recipes(s)[0].width_px >= 500)
    (recipe,) = recipes(out)
    assert recipe.width_px == 512 and recipe.height_px == 32


def test_text_is_shortened_to_what_matters():
    text = "lorem ipsum " * 40 + "NEEDLE" + " dolor sit" * 40
    s = Scenario(requests=(RequestSpec(id="r0", body=chat(text)),))
    out = minimized(s, lambda s: "NEEDLE" in s.requests[0].body["messages"][-1]["content"])
    assert out.requests[0].body["messages"] == [{"role": "user", "content": "NEEDLE"}]


def test_shorter_texts_halve_then_cut():
    assert list(bodies.shorter_texts("abcdefgh"))[:2] == ["abcd", "efgh"]
    assert "abcdgh" in bodies.shorter_texts("abcdefgh")
    assert list(bodies.shorter_texts("a")) == []


def test_sampling_goes_to_defaults_and_streaming_off_unless_needed():
    body = chat("hi", temperature=0.7, top_p=0.9, seed=3, stop=["x"], logprobs=True,
                stream=True, stream_options={"include_usage": True})
    s = Scenario(requests=(RequestSpec(id="r0", body=body, disconnect_after_chunks=2),))
    out = minimized(s, lambda s: s.requests[0].body.get("top_p") == 0.9)
    assert out.requests[0].body == {"messages": [{"role": "user", "content": "h"}], "max_tokens": 4,
                                    "top_p": 0.9}
    assert out.requests[0].disconnect_after_chunks is None

    out = minimized(s, lambda s: s.requests[0].disconnect_after_chunks == 2)
    assert out.requests[0].body.get("stream") is True and "stream_options" not in out.requests[0].body


def test_schema_and_tools_are_simplified():
    schema = {"type": "object", "properties": {"a": {"type": "string", "pattern": "^x$"},
                                               "b": {"type": "integer", "minimum": 3}},
              "required": ["a", "b"], "additionalProperties": False}
    tools = [{"type": "function", "function": {"name": n, "parameters": {"type": "object"}}}
             for n in ("f", "g", "h")]
    body = chat("hi", response_format={"type": "json_schema",
                                       "json_schema": {"name": "s", "schema": schema, "strict": True}},
                tools=tools, tool_choice={"type": "function", "function": {"name": "g"}})
    s = Scenario(requests=(RequestSpec(id="r0", body=body),))

    def fails(s: Scenario) -> bool:
        b = s.requests[0].body
        spec = (b.get("response_format") or {}).get("json_schema") or {}
        return "pattern" in str(spec.get("schema")) and len(b.get("tools", [])) >= 1

    out = minimized(s, fails).requests[0].body
    assert out["response_format"]["json_schema"]["schema"] == {
        "type": "object", "properties": {"a": {"type": "string", "pattern": "^x$"}}}
    assert len(out["tools"]) == 1  # the named tool_choice went first, then tools one by one
    assert "tool_choice" not in out


def test_structured_outputs_schemas_and_tool_parameters_shrink_too():
    # Modelled on the real xgrammar->guidance fallback bug: a tuple `items` plus a float range.
    schema = {"type": "object", "required": ["a", "t"], "additionalProperties": True,
              "properties": {"a": {"anyOf": [{"type": "number", "minimum": 1e-9, "maximum": 1e308},
                                             {"type": "boolean"}]},
                             "t": {"type": "array", "items": [{"const": 1}, {"type": "string"}],
                                   "additionalItems": False},
                             "n": {"enum": ["x", 2, True]}}}
    params = {"type": "object", "properties": {"q": {"type": "string", "maxLength": 3},
                                               "k": {"type": "integer"}}}
    body = chat("hi", structured_outputs={"json": schema, "disable_any_whitespace": True},
                tools=[{"type": "function", "function": {"name": "f", "parameters": params}}])
    s = Scenario(requests=(RequestSpec(id="r0", body=body),))

    def fails(s: Scenario) -> bool:
        b = s.requests[0].body
        text = str((b.get("structured_outputs") or {}).get("json"))
        tool = str(b.get("tools"))
        return "1e+308" in text and "'items': [" in text and "maxLength" in tool

    out = minimized(s, fails).requests[0].body
    assert out["structured_outputs"] == {"json": {
        "type": "object",  # `type` stays on purpose: each node remains a schema of its kind
        "properties": {"a": {"anyOf": [{"type": "number", "maximum": 1e308}]},
                       "t": {"type": "array", "items": [{"type": "string"}]}}}}
    assert out["tools"][0]["function"]["parameters"] == {
        "type": "object", "properties": {"q": {"type": "string", "maxLength": 3}}}


def test_a_schema_sent_as_text_stays_text_and_choices_drop_one_by_one():
    body = chat("hi", structured_outputs={"json": '{"type": "object", "required": ["a"]}'})
    variants = list(bodies.simpler_structured_outputs(body))
    assert variants[0] == bodies.without_keys(body, ("structured_outputs",))
    assert {"json": '{"type": "object"}'} in [v["structured_outputs"] for v in variants[1:]]
    choices = list(bodies.simpler_structured_outputs(chat("hi", structured_outputs={"choice": ["a", "b"]})))
    assert [v["structured_outputs"] for v in choices[1:]] == [{"choice": ["b"]}, {"choice": ["a"]}]


def test_drop_images_keeps_the_one_that_matters():
    a, b, c = image(32, 32, seed=1), image(32, 32, seed=2), image(32, 32, seed=3)
    s = Scenario(requests=(RequestSpec(id="r0", body=chat([image_part(a), image_part(b), image_part(c)])),),
                 media={m.sha256: m for m in (a, b, c)})
    out = minimized(s, lambda s: any(
        ImageRecipe.from_json(s.media[h].recipe).seed == 2 for h in s.requests[0].media_refs()))
    (recipe,) = recipes(out)
    assert recipe.seed == 2 and len(out.media) == 1
