"""Build the tiny random-weight Qwen3-VL checkpoint (runs inside the server venv).

This file is executed by the server venv's Python, not imported by vlfuzz: it needs
torch, transformers and tokenizers, which only that venv has. It takes no input but
the output folder, so the same vlfuzz version always builds the same checkpoint.
Sizes follow facts verified on the CPU build (head_dim 64: 16 kills the engine).
"""

from __future__ import annotations

import json
import sys
import sysconfig
from pathlib import Path

SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>",
]
MIN_PIXELS = 4096
MAX_PIXELS = 1048576

# Qwen-style ChatML. vLLM hands image parts over as {"type": "image"}; both that and
# the OpenAI "image_url" spelling are accepted. Tools are listed as JSON in <tools>
# and the hermes parser reads <tool_call>{...}</tool_call> back out.
CHAT_TEMPLATE = r"""
{%- macro render_content(content) -%}
{%- if content is string -%}{{ content }}
{%- elif content is none -%}
{%- else -%}{%- for part in content -%}
{%- if part.type == 'text' -%}{{ part.text }}
{%- elif part.type in ['image', 'image_url'] or 'image' in part or 'image_url' in part -%}<|vision_start|><|image_pad|><|vision_end|>
{%- elif part.type in ['video', 'video_url'] -%}<|vision_start|><|video_pad|><|vision_end|>
{%- endif -%}
{%- endfor -%}{%- endif -%}
{%- endmacro -%}
{%- if tools %}<|im_start|>system
{% if messages[0].role == 'system' %}{{ render_content(messages[0].content) }}

{% endif %}# Tools

You may call one or more functions to assist with the user query.

<tools>
{% for tool in tools %}{{ tool | tojson }}
{% endfor %}</tools>

For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags.<|im_end|>
{% elif messages[0].role == 'system' %}<|im_start|>system
{{ render_content(messages[0].content) }}<|im_end|>
{% endif %}
{%- for message in messages -%}
{%- if message.role == 'system' and loop.first -%}
{%- elif message.role == 'tool' -%}<|im_start|>user
<tool_response>
{{ render_content(message.content) }}
</tool_response><|im_end|>
{% else -%}<|im_start|>{{ message.role }}
{{ render_content(message.content) }}
{%- if message.tool_calls is defined and message.tool_calls -%}
{%- for tc in message.tool_calls -%}
{%- set f = tc.function if tc.function is defined else tc %}
<tool_call>
{"name": "{{ f.name }}", "arguments": {% if f.arguments is string %}{{ f.arguments }}{% else %}{{ f.arguments | tojson }}{% endif %}}
</tool_call>
{%- endfor -%}
{%- endif -%}<|im_end|>
{% endif -%}
{%- endfor -%}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif -%}
""".strip() + "\n"


def training_text() -> list[str]:
    """Text to train the tokenizer on: this interpreter's own stdlib sources, sorted,
    so the same Python builds the same vocabulary."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(stdlib.glob("*.py"))[:200]
    return [f.read_text(encoding="utf-8", errors="replace") for f in files]


def build_tokenizer(out: Path, vocab_size: int = 2000):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(training_text(), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", unk_token=None,
                                   additional_special_tokens=SPECIAL_TOKENS[3:])
    fast.chat_template = CHAT_TEMPLATE
    return fast


def main(out: Path) -> None:
    import torch
    from transformers import (Qwen2VLImageProcessor, Qwen3VLConfig,
                              Qwen3VLForConditionalGeneration, Qwen3VLProcessor)
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(out)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    vocab = ((len(tokenizer) + 63) // 64) * 64
    config = Qwen3VLConfig(
        text_config=dict(
            vocab_size=vocab, hidden_size=128, intermediate_size=256, num_hidden_layers=4,
            num_attention_heads=2, num_key_value_heads=1, head_dim=64,
            max_position_embeddings=32768,
            rope_parameters={"rope_type": "default", "rope_theta": 5000000.0,
                             "mrope_section": [16, 8, 8], "mrope_interleaved": True},
            eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
        ),
        vision_config=dict(
            depth=4, hidden_size=64, intermediate_size=128, num_heads=4, patch_size=16,
            spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=128,
            num_position_embeddings=2304, deepstack_visual_indexes=[1, 2, 3],
        ),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = Qwen3VLForConditionalGeneration(config).to(torch.bfloat16)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.save_pretrained(out)
    image_processor = Qwen2VLImageProcessor(
        patch_size=16, merge_size=2, temporal_patch_size=2,
        size={"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS},
        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5],
    )
    video_processor = Qwen3VLVideoProcessor(patch_size=16, merge_size=2, temporal_patch_size=2)
    processor = Qwen3VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                 video_processor=video_processor, chat_template=CHAT_TEMPLATE)
    processor.save_pretrained(out)
    image_processor.save_pretrained(out)  # preprocessor_config.json, for older loaders
    (out / "vlfuzz-checkpoint.json").write_text(json.dumps(
        {"special_token_ids": ids, "vocab_size": vocab, "tokenizer_size": len(tokenizer)},
        indent=2))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
