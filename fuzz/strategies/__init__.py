"""Hypothesis strategies for vlfuzz: images (as render-able recipes), texts,
structured-output formats, tools, chat requests and whole scenarios."""

from fuzz.strategies._common import StrategyArgumentError
from fuzz.strategies.coverage import feature_counts
from fuzz.strategies.images import (MAX_PIXELS, image_recipes, image_sizes, image_tags,
                                    images)
from fuzz.strategies.requests import ChatRequest, MediaPool, chat_requests
from fuzz.strategies.scenarios import TRAFFIC_SHAPES, arrival_offsets, scenarios
from fuzz.strategies.schemas import response_format_tags, response_formats, seed_schemas
from fuzz.strategies.texts import SPECIAL_TOKENS, estimate_tokens, text_tags, texts
from fuzz.strategies.tools import seed_tools, tool_choices, tool_configs, tool_sets, tool_tags

__all__ = [
    "MAX_PIXELS", "SPECIAL_TOKENS", "TRAFFIC_SHAPES", "ChatRequest", "MediaPool",
    "StrategyArgumentError", "arrival_offsets", "chat_requests", "estimate_tokens",
    "feature_counts", "image_recipes", "image_sizes", "image_tags", "images",
    "response_format_tags", "response_formats", "scenarios", "seed_schemas", "seed_tools",
    "text_tags", "texts", "tool_choices", "tool_configs", "tool_sets", "tool_tags",
]
