"""Signatures on real vLLM and aiohttp error texts: variants fold, different bugs stay apart."""

from __future__ import annotations

import json
from pathlib import Path

from fuzz.signature import MAX_MESSAGE_CHARS, make_signature, normalise_message

OBSERVED = json.loads((Path(__file__).parent / "fixtures" / "observed_spec_rules.json")
                      .read_text())["cases"]

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


# -- more real vLLM / aiohttp texts -------------------------------------------------------------

TOO_LARGE = ("'max_tokens' or 'max_completion_tokens' is too large: 8000. This model's maximum "
             "context length is 4096 tokens and your request has 2778 input tokens "
             "(8000 > 4096 - 2778). None")
DECODER = ("The decoder prompt (length 9000) is longer than the maximum model length of 8192. "
           "Make sure that `max_model_len` is no smaller than the number of text tokens plus "
           "multimodal tokens.")
BAD_IMAGE = "Failed to load image: cannot identify image file <_io.BytesIO object at 0x7f8b2c3d4e50>"
TOO_SMALL = "height:5 or width:1093 must be larger than factor:32"
PAYLOAD = ("ClientPayloadError: Response payload is not completed: <{cls}: 400, "
           "message='{msg}'>")
PYDANTIC = ("[{{'type': 'missing', 'loc': ('body', 'messages'), 'msg': 'Field required', "
            "'input': {input}}}]")
PYDANTIC_V2 = ("1 validation error for ChatCompletionRequest\nmessages\n  Field required "
               "[type=missing, input_value={input}, input_type=dict]")


def test_output_cap_errors_fold_numbers_keep_field_names() -> None:
    a = normalise_message(TOO_LARGE)
    assert a == normalise_message(TOO_LARGE.replace("8000", "9000").replace("2778", "17"))
    assert a.startswith("'max_tokens' or 'max_completion_tokens' is too large: <n>.")
    assert normalise_message(DECODER) == normalise_message(DECODER.replace("9000", "12345"))


def test_image_errors_fold_addresses_and_sizes() -> None:
    assert normalise_message(BAD_IMAGE) == normalise_message(
        BAD_IMAGE.replace("0x7f8b2c3d4e50", "0x7f00aa12"))
    assert normalise_message(TOO_SMALL) == normalise_message("height:3 or width:20 must be "
                                                             "larger than factor:32")
    assert normalise_message("At most 8 image(s) may be provided in one prompt.") == \
        "At most <n> image(s) may be provided in one prompt."


def test_aiohttp_payload_errors_keep_their_wording() -> None:
    te = PAYLOAD.format(cls="TransferEncodingError",
                        msg="Not enough data to satisfy transfer length header.")
    cl = PAYLOAD.format(cls="ContentLengthError",
                        msg="Not enough data to satisfy content length header.")
    other = PAYLOAD.format(cls="TransferEncodingError", msg="Can not decode content-encoding")
    assert "Not enough data to satisfy transfer length header." in normalise_message(te)
    assert len({normalise_message(te), normalise_message(cl), normalise_message(other)}) == 3


def test_pydantic_errors_fold_the_echoed_request() -> None:
    for template in (PYDANTIC, PYDANTIC_V2):
        a = normalise_message(template.format(input="{'model': 'm', 'max_tokens': 4}"))
        b = normalise_message(template.format(
            input="{'model': 'other', 'x': [1, {'a': ')}'}], 'seed': 'long text value'}"))
        assert a == b and "<input>" in a and "missing" in a
    typed = normalise_message("[{'type': 'float_parsing', 'loc': ('body', 'temperature'), "
                              "'msg': 'Input should be a valid number', 'input': 'hot'}]")
    assert "float_parsing" in typed and "temperature" in typed and "hot" not in typed
    assert "Input should be a valid number" in typed
    assert typed != normalise_message(PYDANTIC.format(input="{}"))


def test_validation_messages_stay_apart() -> None:
    texts = ["n must be at least 1, got 0.", "temperature must be non-negative, got -1.0.",
             "top_p must be in (0, 1], got 1.5.", "Requested sample logprobs of 21, which is "
             "greater than max allowed: 20", "Stream options can only be defined when "
             "`stream=True`.", "When using `tool_choice`, `tools` must be set.",
             "The tool specified in `tool_choice` does not match any of the specified `tools`",
             TOO_LARGE, DECODER, BAD_IMAGE, TOO_SMALL, "Token id 5000 is out of vocabulary",
             "The provided JSON schema contains features not supported by xgrammar."]
    assert len({normalise_message(t) for t in texts}) == len(texts)
    assert normalise_message("n must be at least 1, got -5.") == normalise_message(texts[0])


def test_real_vllm_032_validation_errors() -> None:
    """The 400 texts vLLM 0.32.0 gave (fixtures/observed_spec_rules.json): each rule's
    message stays distinct, while the same rule with other values folds together."""
    msgs = {k: c["message"] for k, c in OBSERVED.items() if c["message"]}
    norm = {k: normalise_message(m) for k, m in msgs.items()}
    same = [("max0", "maxneg", "maxc0")]  # one check (max_tokens < 1), three values
    for group in same:
        assert len({norm[k] for k in group}) == 1
    assert len(set(norm.values())) == len(norm) - sum(len(g) - 1 for g in same)
    assert norm["nomsgs"] == ("<n> validation error: {'type': 'missing', 'loc': body.messages, "
                              "'msg': Field required, 'input': <input>}")
    moved = OBSERVED["nomsgs"]["message"].replace("body.messages", "body.messages.3.content")
    assert normalise_message(moved.replace(".3.", ".7.")) == normalise_message(moved)
    assert normalise_message(moved) != norm["nomsgs"]
