"""The embedded default target: a real vLLM (CPU build) serving a tiny Qwen3-VL.

`paths` says where things are cached, `install` builds the server's own venv,
`checkpoint` builds the random-weight model, `server` starts/stops/watches it.
"""
