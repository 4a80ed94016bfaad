"""vlfuzz: a multimodal concurrency fuzzer for vLLM's OpenAI-compatible server."""

__version__ = "0.1.0"
