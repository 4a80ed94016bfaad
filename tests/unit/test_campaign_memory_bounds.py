"""What a campaign keeps for its whole run stays bounded however many scenarios it
sends: the process-wide memo of rendered images (by bytes) and the deadline policy's
size classes (least recently observed dropped). Counted, not timed; see
bench/campaign_memory.py for the campaign-level figures."""

from __future__ import annotations

from fuzz.deadlines import MAX_CLASSES, DeadlinePolicy, size_class
from fuzz.model import Deadlines, Media, RequestSpec, RequestTrace, media_url
from fuzz.strategies.pool import RENDER_CACHE, RenderCache
from fuzz.strategies.seed_images import SeedImage

IMG = Media(data=b"img", mime="image/png")


def spec(prompt_chars: int, max_tokens: int, images: int, stream: bool) -> RequestSpec:
    content: list = [{"type": "text", "text": "x" * prompt_chars}]
    content += [{"type": "image_url", "image_url": {"url": media_url(IMG.sha256)}}] * images
    body: dict = {"messages": [{"role": "user", "content": content}], "max_tokens": max_tokens}
    if stream:
        body["stream"] = True
    return RequestSpec(id="r", body=body)


def ok(total: float) -> RequestTrace:
    return RequestTrace(id="r", sent_s=0.0, status=200, first_byte_s=0.1, end_s=total)


def test_the_render_memo_holds_at_most_its_bytes_however_many_images_are_drawn() -> None:
    cache = RenderCache(max_bytes=64 * 1024)
    for n in range(2000):
        media, sha = cache.get(SeedImage("x", n), lambda n=n: Media(data=n.to_bytes(4, "big") * 1000,
                                                                    mime="image/png"))
        assert sha == media.sha256
    assert cache.nbytes <= cache.max_bytes and len(cache) <= cache.max_bytes // 4000
    # the most recent images are the ones kept (Hypothesis re-draws soon after a draw)
    hit, _ = cache.get(SeedImage("x", 1999), lambda: Media(data=b"other", mime="image/png"))
    assert hit.data == (1999).to_bytes(4, "big") * 1000
    # the campaign's memo is small: it stays for the whole (overnight) run
    assert RENDER_CACHE.max_bytes <= 32 * 2**20


def test_the_deadline_policy_keeps_at_most_max_classes_however_many_shapes_it_sees() -> None:
    policy = DeadlinePolicy(floor=Deadlines(1.0, 1.0, 2.0), ceiling=Deadlines(100.0, 50.0, 300.0),
                            min_samples=5, max_classes=32)
    shapes = [(2 ** p, 2 ** t, i, s, c) for p in range(12) for t in range(9) for i in range(4)
              for s in (False, True) for c in (1, 3, 9)]
    assert len({size_class(spec(*shape[:4]), shape[4]) for shape in shapes}) > 32 * 20
    for shape in shapes:
        assert policy.observe(spec(*shape[:4]), ok(1.0), concurrency=shape[4])
    assert policy.classes() <= 32
    assert policy.overall() is not None  # every request still counts overall
    # a class in use keeps learning: its own samples, not the overall pool's
    busy = spec(10, 16, 0, False)
    for _ in range(5):
        policy.observe(busy, ok(20.0))
    for shape in shapes[:100]:
        policy.observe(spec(*shape[:4]), ok(1.0), concurrency=shape[4])
        policy.observe(busy, ok(20.0))
    assert policy.source(busy, "total_s") == "learnt"
    assert policy.deadlines_for(busy).total_s == 80.0  # 4 x its own 20 s
    assert MAX_CLASSES >= 64  # enough for the classes one campaign cycles through
