"""What the runner asks the target around a scenario: health, a canary, `/metrics`, identity.

Each probe opens its own short-lived session that closes its connection after use, so a
probe never inherits a connection a misbehaving scenario left in a bad state, and its
own deadline is the only one that applies. Probes never raise for server faults: an
unreadable `/metrics` is None, a dead target is a `Probe` that says so.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import aiohttp

from fuzz.client import Endpoint, describe_error
from fuzz.metrics import KV_TOLERANCE, metrics_idle, parse_metrics
from fuzz.model import CHAT_PATH, Probe

CANARY_PROMPT = "Reply with one word."


async def read_metrics(endpoint: Endpoint, *, deadline_s: float = 2.0) -> dict[str, float] | None:
    """The gauges of `/metrics`, or None when it cannot be read or exports none of them."""
    try:
        async with _session(deadline_s) as session:
            status, text = await _get(session, endpoint, "/metrics")
    except asyncio.CancelledError:
        raise
    except Exception:
        return None
    found = parse_metrics(text) if status == 200 else {}
    return found or None


async def settle_metrics(endpoint: Endpoint, before: Mapping[str, float], cap_s: float,
                         kv_tolerance: float = KV_TOLERANCE,
                         every_s: float = 0.1) -> tuple[dict[str, float] | None, float]:
    """Poll `/metrics` until idle or `cap_s`; the last reading and the seconds waited."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while True:
        reading = await read_metrics(endpoint, deadline_s=max(0.5, min(2.0, cap_s)))
        waited = loop.time() - start
        if reading is None:  # gone (a dead target is target_alive's business)
            return None, waited
        if metrics_idle(reading, before, kv_tolerance) or waited >= cap_s:
            return reading, waited
        await asyncio.sleep(min(every_s, max(0.0, cap_s - waited)))


def _session(deadline_s: float) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, force_close=True),
        timeout=aiohttp.ClientTimeout(total=deadline_s))


async def _get(session: aiohttp.ClientSession, endpoint: Endpoint,
               path: str) -> tuple[int, str]:
    async with session.get(endpoint.url(path), headers=endpoint.headers()) as resp:
        return resp.status, await resp.text(errors="replace")


async def probe_target(endpoint: Endpoint, *, deadline_s: float = 30.0) -> Probe:
    """`/health`, then a tiny canary generation: tells a dead target from a wedged one.

    The canary is skipped when `/health` does not answer at all (nothing to wedge)."""
    try:
        async with _session(deadline_s) as session:
            status, _ = await _get(session, endpoint, "/health")
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        name = "TimeoutError" if isinstance(exc, asyncio.TimeoutError) else None
        err = f"{name}: /health gave no answer within {deadline_s:g}s" if name else None
        return Probe(health_status=None, health_error=err or describe_error(exc))
    body = {"model": endpoint.model, "messages": [{"role": "user", "content": CANARY_PROMPT}],
            "max_tokens": 4, "temperature": 0}
    health_error = None if status == 200 else f"HTTP {status}"
    loop = asyncio.get_running_loop()
    start = loop.time()
    ok, error = False, None
    try:
        async with _session(deadline_s) as session:
            async with session.post(endpoint.url(CHAT_PATH), json=body,
                                    headers=endpoint.headers()) as resp:
                text = await resp.text(errors="replace")
        if resp.status != 200:
            error = f"HTTP {resp.status}: {text[:500]}"
        else:
            choices = json.loads(text).get("choices")
            ok = isinstance(choices, list) and len(choices) > 0
            error = None if ok else f"no choices: {text[:500]}"
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        if isinstance(exc, asyncio.TimeoutError) and not str(exc):
            error = f"TimeoutError: canary gave no answer within {deadline_s:g}s"
        else:
            error = describe_error(exc)
    return Probe(health_status=status, health_error=health_error, canary_ok=ok, canary_error=error,
                 canary_latency_s=loop.time() - start)


async def fetch_target_info(endpoint: Endpoint, *, deadline_s: float = 10.0) -> dict[str, Any]:
    """The server's identity for bundles: `/version` and `/v1/models`. Best effort:
    whatever cannot be fetched is None, with the reason under `errors`."""
    info: dict[str, Any] = {"base_url": endpoint.base_url, "version": None, "models": None,
                            "model_id": None, "max_model_len": None, "errors": {}}
    async with _session(deadline_s) as session:
        for path in ("/version", "/v1/models"):
            try:
                status, text = await _get(session, endpoint, path)
                if status != 200:
                    raise ValueError(f"HTTP {status}: {text[:200]}")
                doc = json.loads(text)
                if path == "/version":
                    info["version"] = doc.get("version") if isinstance(doc, dict) else None
                    continue
                models = [m for m in doc.get("data", []) if isinstance(m, dict)]
                info["models"] = models
                chosen = next((m for m in models if m.get("id") == endpoint.model),
                              models[0] if models else None)
                if chosen is not None:
                    info["model_id"] = chosen.get("id")
                    info["max_model_len"] = chosen.get("max_model_len")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                info["errors"][path] = describe_error(exc)
    return info
