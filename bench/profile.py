"""Profile the service under wrk as the bench drives it: py-spy (or perf) samples the serving process.

    .venv/bin/python bench/profile.py [--seconds 10] [--concurrency 8] [--top 25] [--batch N] [--perf]
                                      [--app-dir DIR]

Starts a throwaway PostgreSQL and the service (one worker, LOG_LEVEL=info as deployed, so the
access log is part of the profile), points wrk with bench/post.lua at the single-record
endpoint (or, with --batch N, N-record batches at the batch endpoint),
and records py-spy samples of the service meanwhile (py-spy from requirements-dev.txt).
Prints the functions with the most self time and the most total time, and writes the raw
collapsed stacks to bench/results/profile-c<C>.txt (readable by flamegraph tools).

py-spy samples wall time: a thread that waits for a core inside send(2) counts as busy there, so
on a machine short of cores its system-call sites look heavier than they are. With --perf, perf(1)
(Debian's linux-perf) samples CPU time instead and prints the shares of the shared objects (the
Python interpreter, the kernel, each C extension) and their hottest symbols: it says whether
cutting Python work or system calls pays, but names no Python function.
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from run import RESULTS, add_service_arguments, service_on_throwaway_cluster, wrk  # noqa: E402 - bench/ first


def _short(frame: str) -> str:
    """ "func (/path/to/file.py:12)" as "func (file.py)": one entry per function, not per line."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.split(':')[0].rsplit('/', 1)[-1]})"


def summarise(collapsed: Path, top: int) -> str:
    """Self and total time per function from py-spy's collapsed stacks ("a;b;c count")."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        frames = [_short(f) for f in stack.split(";") if " (" in f]
        samples += n
        if frames:
            own[frames[-1]] += n
        for frame in set(frames):
            total[frame] += n
    lines = [f"{samples} samples", "", "self %  function"]
    lines += [f"{100 * n / samples:5.1f}  {name}" for name, n in own.most_common(top)]
    lines += ["", "total %  function"]
    lines += [f"{100 * n / samples:5.1f}  {name}" for name, n in total.most_common(top)]
    return "\n".join(lines)


def perf_summary(data: Path, top: int) -> str:
    """The CPU shares of the shared objects, then of the symbols, from a perf.data file."""
    parts = []
    for keys in ("dso", "dso,sym"):
        report = subprocess.run(
            ["perf", "report", "--stdio", "--no-children", "-g", "none", "--sort", keys, "-i", str(data)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        rows = [line.rstrip() for line in report.splitlines() if line.strip() and not line.startswith("#")]
        parts.append("\n".join(rows[:top]))
    return "CPU share by shared object\n" + parts[0] + "\n\nCPU share by symbol\n" + parts[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_service_arguments(parser, seconds=10)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--batch", type=int, default=0, help="profile N-record batches at the batch endpoint")
    parser.add_argument("--log-level", default="info", help="the service's LOG_LEVEL (deployed: info)")
    parser.add_argument("--perf", action="store_true", help="sample CPU time with perf(1) instead of py-spy")
    args = parser.parse_args()
    name = f"profile-c{args.concurrency}{f'-b{args.batch}' if args.batch else ''}"
    output = RESULTS / (f"{name}.perf.data" if args.perf else f"{name}.txt")
    path = "batch" if args.batch else ""
    result: dict = {}
    with service_on_throwaway_cluster(args, "profile", "profile-service.log", args.log_level) as service:
        pid, seconds = str(service.process.pid), str(round(args.seconds))
        if args.perf:
            sampler = ["perf", "record", "--quiet", "-F", "999", "-p", pid, "-o", str(output), "--", "sleep", seconds]
        else:
            sampler = ["py-spy", "record", "--format", "raw", "--nonblocking", "--duration", seconds, "--rate", "200"]
            sampler += ["--pid", pid, "--output", str(output)]
        spy = subprocess.Popen(sampler, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        load = threading.Thread(
            target=lambda: result.update(
                wrk(
                    f"http://127.0.0.1:{service.port}/ingest/market-data/{path}",
                    args.concurrency,
                    args.seconds + 1,
                    "PROF",
                    BENCH_BATCH=str(args.batch),
                )
            )
        )
        load.start()
        spy.wait()
        load.join()
    print(f"wrk C={args.concurrency}: {result['rps']} req/s, p99 {result['p99_ms']} ms, errors {result['errors']}")
    print(perf_summary(output, args.top) if args.perf else summarise(output, args.top))


if __name__ == "__main__":
    main()
