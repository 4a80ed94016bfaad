"""fuzz.sse: the byte-level fast path cuts streams into the same events as the line rules."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from fuzz.sse import SseParser, _LineParser


def parse(parser: SseParser | _LineParser, chunks: list[bytes]) -> list[str]:
    out = [ev for chunk in chunks for ev in parser.feed(chunk)]
    return out + parser.close()


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)])]


def test_vllm_framing_gives_one_event_per_block_whatever_the_reads() -> None:
    stream = b'data: {"a": 1}\n\ndata: {"b": "\xc3\xa9"}\n\ndata: [DONE]\n\n'
    for cuts in ([], [1], [7, 8, 9, 20], list(range(1, len(stream)))):
        assert parse(SseParser(), split(stream, cuts)) == ['{"a": 1}', '{"b": "é"}', "[DONE]"]


def test_spec_forms_are_kept() -> None:
    stream = (b": keep-alive comment\n\nevent: message\nid: 7\ndata: x\ndata:y\n\n"
              b"data:  two spaces\n\n\n\ndata: last-without-blank-line")
    assert parse(SseParser(), [stream]) == ["x\ny", " two spaces", "last-without-blank-line"]


def test_crlf_streams_switch_to_the_line_parser_for_good() -> None:
    parser = SseParser()
    assert parser.feed(b"data: a\n\ndata: b") == ["a"]
    assert parser.feed(b"\r\n\r\ndata: c\n\n") == ["b", "c"]
    assert parser.feed(b"data: d\r\n\r\n") == ["d"]


def test_invalid_utf8_is_replaced_not_raised() -> None:
    assert parse(SseParser(), [b"data: \xff\xfe ok\n\n"]) == ["\ufffd\ufffd ok"]


PIECES = [b"data:", b"data: ", b" ", b"\n", b"\r", b"\r\n", b"\n\n", b"x", b"{}", b":",
          b"id: 1", b"\xc3\xa9", b"\xc3", b"\xa9", b"[DONE]"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=40),
       st.lists(st.integers(min_value=0, max_value=200), max_size=8))
def test_fast_path_agrees_with_the_line_rules(pieces: list[bytes], cuts: list[int]) -> None:
    data = b"".join(pieces)
    chunks = split(data, cuts)
    assert parse(SseParser(), chunks) == parse(_LineParser(), chunks)
