"""The standalone `repro.py` written into every bundle.

It must run on a maintainer's machine with nothing but Python 3 and aiohttp, so it
is a self-contained script kept as text here (it reads the bundle at run time, so
every bundle gets the same file).
"""

REPRO_PY = r'''#!/usr/bin/env python3
"""Replay a vlfuzz failure bundle against an OpenAI-compatible server (e.g. vLLM).

Needs only Python 3 and aiohttp (pip install aiohttp). Reads bundle.json and media/
from this folder, sends the bundle's requests concurrently at their original offsets,
and prints each status and the head of each body.

Exit status: 1 if any response was a 5xx, a transport error or a timeout; else 0.
"""
import argparse
import asyncio
import base64
import json
import os
import sys
import time
from pathlib import Path

import aiohttp

HERE = Path(__file__).resolve().parent
MEDIA = "vlfuzz-media:"


def load_bundle():
    bundle = json.loads((HERE / "bundle.json").read_text(encoding="utf-8"))
    mimes = {m["sha256"]: m["mime"] for m in bundle["scenario"]["media"]}
    urls = {}
    for sha, rel in bundle["media_files"].items():
        data = base64.b64encode((HERE / rel).read_bytes()).decode("ascii")
        urls[sha] = "data:%s;base64,%s" % (mimes[sha], data)
    return bundle, urls


def inline(value, urls):
    """Replace every media placeholder with its data URL."""
    if isinstance(value, str):
        return urls[value[len(MEDIA):]] if value.startswith(MEDIA) else value
    if isinstance(value, dict):
        return {k: inline(v, urls) for k, v in value.items()}
    if isinstance(value, list):
        return [inline(v, urls) for v in value]
    return value


def wire_body(req, urls, model):
    """What the fuzzer sent: media inlined, model filled in when absent."""
    body, method = inline(req["body"], urls), req.get("method", "POST").upper()
    if isinstance(body, str):
        return body.encode("utf-8", "surrogatepass")  # deliberately raw
    if isinstance(body, dict):
        if method in ("GET", "HEAD") and not body:
            return None
        if method == "POST" and "model" not in body and model:
            body = {"model": model, **body}
    return json.dumps(body).encode("utf-8")


async def send(session, url, req, data, t0):
    await asyncio.sleep(max(0.0, req.get("offset_ms", 0) / 1000 - (time.monotonic() - t0)))
    start = time.monotonic()
    headers = {"Content-Type": "application/json"} if data is not None else {}
    body = req["body"]
    try:
        async with session.request(req.get("method", "POST"), url, data=data,
                                   headers=headers) as resp:
            limit = req.get("disconnect_after_chunks")
            if isinstance(body, dict) and body.get("stream") is True:
                head, events = b"", 0
                async for line in resp.content:
                    head += line if len(head) < 2000 else b""
                    if line.startswith(b"data:"):
                        events += 1
                        if limit is not None and events >= limit:
                            break  # hang up mid-stream, as the fuzzer did
            else:
                head = await resp.read()
            return resp.status, head.decode("utf-8", "replace"), time.monotonic() - start
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
        return None, "%s: %s" % (type(e).__name__, e), time.monotonic() - start


async def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--endpoint", default="http://127.0.0.1:8000", help="server base URL")
    ap.add_argument("--model", help="model id (default: the one recorded in the bundle)")
    ap.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY"))
    ap.add_argument("--timeout", type=float, help="total seconds per request")
    args = ap.parse_args()
    bundle, urls = load_bundle()
    deadlines = bundle["trace"].get("deadlines", {})
    timeout = aiohttp.ClientTimeout(
        total=args.timeout or deadlines.get("total_s", 180.0),
        sock_read=max(deadlines.get("first_byte_s", 60.0), deadlines.get("stall_s", 30.0)))
    model = args.model or bundle["target"].get("model_id") or bundle["target"].get("model")
    headers = {"Authorization": "Bearer " + args.api_key} if args.api_key else {}
    print("failure: %s\nsignature: %s" % (bundle["failure"]["message"],
                                           bundle["failure"]["signature"]))
    requests = bundle["scenario"]["requests"]
    t0 = time.monotonic()
    async with aiohttp.ClientSession(timeout=timeout, headers=headers,
                                     connector=aiohttp.TCPConnector(limit=0)) as session:
        jobs = []
        for req in requests:
            url = args.endpoint.rstrip("/") + req.get("path", "/v1/chat/completions")
            jobs.append(send(session, url, req, wire_body(req, urls, model), t0))
        results = await asyncio.gather(*jobs)
    bad = False
    for req, (status, head, took) in zip(requests, results):
        bad = bad or status is None or status >= 500
        head = head[:300].replace("\n", "\\n")
        print("[%s +%gms] %s %.2fs %s" % (req["id"], req.get("offset_ms", 0),
                                           status if status is not None else "ERROR", took, head))
    print("FAILED: a 5xx, transport error or timeout" if bad else "no 5xx or transport error")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
'''
