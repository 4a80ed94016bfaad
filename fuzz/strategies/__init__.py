"""Hypothesis strategies for vlfuzz: images (as render-able recipes and seed files),
texts and long contexts, histories, structured outputs and schemas, tools, sampling
fields, traffic schedules, chat requests and whole scenarios."""

from fuzz.strategies._common import StrategyArgumentError
from fuzz.strategies.contexts import context_texts, grow_to_tokens
from fuzz.strategies.coverage import feature_counts
from fuzz.strategies.exclusion import TAG_ROOTS, Exclusion
from fuzz.strategies.history import histories
from fuzz.strategies.images import (MAX_PIXELS, image_recipes, image_sizes, image_tags,
                                    images)
from fuzz.strategies.pool import MediaPool
from fuzz.strategies.requests import ChatRequest, chat_requests
from fuzz.strategies.schema_gen import json_schemas, schema_features
from fuzz.strategies.scenarios import scenarios
from fuzz.strategies.schemas import (any_schemas, response_format_tags, response_formats,
                                     seed_schemas)
from fuzz.strategies.seed_images import SeedImage, seed_files
from fuzz.strategies.structured import structured_outputs, structured_outputs_tags
from fuzz.strategies.texts import (SPECIAL_TOKENS, UNICODE_EDGE_CASES, estimate_tokens,
                                   fit_to_tokens, text_tags, texts)
from fuzz.strategies.tools import seed_tools, tool_choices, tool_configs, tool_sets, tool_tags
from fuzz.strategies.traffic import TRAFFIC_SHAPES, arrival_offsets
from fuzz.strategies.urls import URL_BEHAVIOURS, fixture_path

__all__ = [
    "MAX_PIXELS", "SPECIAL_TOKENS", "TAG_ROOTS", "TRAFFIC_SHAPES", "UNICODE_EDGE_CASES",
    "URL_BEHAVIOURS", "ChatRequest", "Exclusion", "MediaPool", "SeedImage",
    "StrategyArgumentError", "any_schemas", "arrival_offsets", "chat_requests", "context_texts",
    "estimate_tokens", "feature_counts", "fit_to_tokens", "fixture_path", "grow_to_tokens",
    "histories", "image_recipes", "image_sizes", "image_tags", "images", "json_schemas",
    "response_format_tags", "response_formats", "scenarios", "schema_features", "seed_files",
    "seed_schemas", "seed_tools", "structured_outputs", "structured_outputs_tags", "text_tags",
    "texts", "tool_choices", "tool_configs", "tool_sets", "tool_tags",
]
