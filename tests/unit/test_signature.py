"""Signatures on real vLLM and aiohttp error texts: variants fold, different bugs stay apart."""

from __future__ import annotations

from fuzz.signature import MAX_MESSAGE_CHARS, make_signature, normalise_message

PROCESSOR = ("Failed to apply Qwen3VLProcessor on data={'text': '<|vision_start|><|image_pad|>"
             "<|vision_end|>', 'images': [<PIL.Image.Image image mode=RGB size=1093x5 at "
             "0x7F3A2C1D5E50>]} with kwargs={}")
PROCESSOR_2 = ("Failed to apply Qwen3VLProcessor on data={'text': 'Describe: <|vision_start|>"
               "<|image_pad|><|vision_end|><|vision_start|><|image_pad|><|vision_end|>', "
               "'images': [<PIL.Image.Image image mode=L size=4000x3 at 0x7f00aa12>, "
               "<PIL.Image.Image image mode=RGB size=1093x5 at 0x7F3A2C1D5E50>]} with kwargs={}")
CONTEXT = ("This model's maximum context length is 8192 tokens. However, you requested 9000 "
           "tokens (8990 in the messages, 10 in the completion). Please reduce the length of "
           "the messages or completion.")
CONTEXT_2 = CONTEXT.replace("9000", "12001").replace("8990", "11000").replace("10 in", "1001 in")
ENGINE = "EngineCore encountered an issue. See stack trace (above) for the root cause."
REFUSED = ("ClientConnectorError: Cannot connect to host 127.0.0.1:8123 ssl:default "
           "[Connect call failed ('127.0.0.1', 8123)]")


def test_processor_error_folds_image_details_and_prompt_text() -> None:
    assert normalise_message(PROCESSOR) == normalise_message(PROCESSOR_2)
    assert normalise_message(PROCESSOR) == (
        "Failed to apply Qwen3VLProcessor on data={'text': '<str>', 'images': [<image>, ...]} "
        "with kwargs={}")


def test_processor_signature_from_the_error_json_message() -> None:
    sig = make_signature("bad_request", 400, PROCESSOR)
    assert sig.startswith("bad_request|400|Failed to apply Qwen3VLProcessor")
    assert "0x7F3A" not in sig and "1093" not in sig


def test_engine_core_signature_is_stable_across_versions() -> None:
    expected = ("server_error|500|EngineCore encountered an issue. "
                "See stack trace for the root cause.")
    assert make_signature("server_error", 500, ENGINE) == expected
    assert make_signature("server_error", 500, ENGINE.replace(" (above)", "")) == expected


def test_context_length_numbers_fold_but_wording_stays() -> None:
    a, b = normalise_message(CONTEXT), normalise_message(CONTEXT_2)
    assert a == b
    assert "model's maximum context length is <n> tokens" in a  # apostrophe is not a quote


def test_token_id_out_of_vocabulary() -> None:
    assert normalise_message("Token id 5000 is out of vocabulary") == \
        normalise_message("Token id 123456 is out of vocabulary") == \
        "Token id <n> is out of vocabulary"


def test_transport_errors() -> None:
    assert normalise_message("ServerDisconnectedError: Server disconnected") == \
        "ServerDisconnectedError: Server disconnected"
    refused = normalise_message(REFUSED)
    assert refused == normalise_message(REFUSED.replace("8123", "9000"))
    assert refused.startswith("ClientConnectorError: Cannot connect to host")
    assert "8123" not in refused


def test_timeouts_and_ids_fold() -> None:
    a = normalise_message("Request chatcmpl-4f3a9b2c1d timed out after 12.5s")
    b = normalise_message("Request chatcmpl-77aa00ff99 timed out after 3s")
    assert a == b == "Request chatcmpl-<id> timed out after <n>s"
    assert normalise_message("id 123e4567-e89b-12d3-a456-426614174000") == "id <uuid>"
    assert normalise_message("in /usr/lib/python3.11/site-packages/vllm/x.py") == "in <path>"


def test_identifiers_with_digits_survive() -> None:
    text = "Unsupported CPU attention configuration: head_dim=16 isa=2 (bfloat16, int64, utf-8)"
    assert normalise_message(text) == ("Unsupported CPU attention configuration: "
                                       "head_dim=<n> isa=<n> (bfloat16, int64, utf-8)")


def test_different_bugs_do_not_merge() -> None:
    sigs = {make_signature("server_error", 500, ENGINE),
            make_signature("bad_request", 400, PROCESSOR),
            make_signature("bad_request", 400, CONTEXT),
            make_signature("bad_request", 400, "Token id 5000 is out of vocabulary"),
            make_signature("transport", None, "ServerDisconnectedError: Server disconnected"),
            make_signature("transport", None, REFUSED),
            make_signature("hang", None, "no response", "first_byte>60s"),
            make_signature("hang", 200, "no response", "stall>30s")}
    assert len(sigs) == 8


def test_short_quoted_names_are_kept_long_values_folded() -> None:
    a = normalise_message("Unknown field 'foo_bar'")
    b = normalise_message("Unknown field 'other'")
    assert a != b
    assert normalise_message("input 'a long user prompt here'") == "input '<str>'"


def test_long_messages_are_truncated_and_signature_shape() -> None:
    msg = normalise_message("word " * 500)
    assert len(msg) <= MAX_MESSAGE_CHARS + 1 and msg.endswith("…")
    assert make_signature("hang", None, "x", "  stall>1s ") == "hang|-|x|stall>1s"
