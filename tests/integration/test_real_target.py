"""Runner and oracles against the real embedded vLLM: no false alarms on healthy
traffic, and the target's identity and probes read correctly."""

from __future__ import annotations

import asyncio

from fuzz.media import ImageRecipe, render
from fuzz.model import Deadlines, RequestSpec, Scenario, media_url
from fuzz.oracles import check
from fuzz.runner import fetch_target_info, probe_target, run_scenario

DEADLINES = Deadlines(first_byte_s=120, stall_s=60, total_s=240)


def _healthy_scenario() -> Scenario:
    image = render(ImageRecipe(width_px=224, height_px=160, mode="RGB", format="PNG",
                               content="gradient", seed=1))
    wide = render(ImageRecipe(width_px=512, height_px=64, mode="RGBA", format="WEBP",
                              content="noise", seed=2))
    user = lambda *parts: [{"role": "user", "content": list(parts)}]  # noqa: E731
    text = {"type": "text", "text": "Describe the picture."}
    img = lambda m: {"type": "image_url", "image_url": {"url": media_url(m.sha256)}}  # noqa: E731
    bodies = [
        {"messages": [{"role": "user", "content": "Hello there"}], "max_tokens": 8},
        {"messages": user(text, img(image)), "max_tokens": 8, "temperature": 0},
        {"messages": user(text, img(image), img(wide)), "max_tokens": 6, "stream": True,
         "stream_options": {"include_usage": True}},
        {"messages": [{"role": "system", "content": "Be brief."},
                      {"role": "user", "content": "word " * 1500}], "max_tokens": 4, "stream": True},
    ]
    requests = tuple(RequestSpec(id=f"r{i}", body=b, offset_ms=20.0 * i) for i, b in enumerate(bodies))
    return Scenario(requests=requests, media={image.sha256: image, wide.sha256: wide})


def test_healthy_concurrent_traffic_raises_no_alarm(real_target):
    scenario = _healthy_scenario()
    trace = asyncio.run(run_scenario(real_target, scenario, DEADLINES))
    assert [r.status for r in trace.requests] == [200, 200, 200, 200]
    assert trace.request("r2").events[-1] == "[DONE]"
    assert trace.probe_after is not None and trace.probe_after.health_status == 200
    assert trace.probe_after.canary_ok is True
    assert check(scenario, trace) == []


def test_a_rejected_image_is_a_400_not_an_alarm(real_target):
    # A 1093x5 image is refused by Qwen3-VL's processor with a 400 (VLLM_CPU.md).
    thin = render(ImageRecipe(width_px=1093, height_px=5, mode="RGB", format="PNG", content="flat", seed=0))
    body = {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": media_url(thin.sha256)}}]}], "max_tokens": 4}
    scenario = Scenario(requests=(RequestSpec(id="r0", body=body),), media={thin.sha256: thin})
    trace = asyncio.run(run_scenario(real_target, scenario, DEADLINES))
    assert trace.request("r0").status == 400
    assert check(scenario, trace) == []


def test_target_identity_and_probe(real_target):
    info = asyncio.run(fetch_target_info(real_target))
    assert info["model_id"] == real_target.model
    assert info["max_model_len"] == 8192
    assert info["version"]
    probe = asyncio.run(probe_target(real_target))
    assert probe.health_status == 200 and probe.canary_ok
