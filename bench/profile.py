"""Profile the service under wrk as the bench drives it: py-spy samples the serving process.

    .venv/bin/python bench/profile.py [--seconds 10] [--concurrency 8] [--top 25] [--batch N] [--app-dir DIR]

Starts a throwaway PostgreSQL and the service (one worker, LOG_LEVEL=info as deployed, so the
access log is part of the profile), points wrk with bench/post_single.lua at the single-record
endpoint (or, with --batch N, bench/post_batch.lua's N-record batches at the batch endpoint),
and records py-spy samples of the service meanwhile (py-spy from requirements-dev.txt).
Prints the functions with the most self time and the most total time, and writes the raw
collapsed stacks to bench/results/profile-c<C>.txt (readable by flamegraph tools).
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from run import API_KEY, RESULTS, start, wrk  # noqa: E402 - bench/ goes on the path first
from tests.support.pgcluster import PgCluster, free_port  # noqa: E402


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--batch", type=int, default=0, help="profile N-record batches at the batch endpoint")
    parser.add_argument("--log-level", default="info", help="the service's LOG_LEVEL (deployed: info)")
    parser.add_argument("--app-dir", type=Path, default=ROOT / "app", help="the service to profile (default app/)")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    pg = PgCluster().init()
    try:
        dsn = pg.create_database("profile")
        port = free_port()
        env = {
            "PATH": os.environ["PATH"],
            "ENVIRONMENT": "testing",
            "API_KEYS": API_KEY,
            "LOG_LEVEL": args.log_level,
            "DATABASE_URL": dsn,
            "DB_POOL_MAX": "32",
            "API_PORT": str(port),
        }
        service = start(
            [sys.executable, "-m", "dw_ingest"], env, port, RESULTS / "profile-service.log", cwd=args.app_dir
        )
        collapsed = RESULTS / f"profile-c{args.concurrency}{f'-b{args.batch}' if args.batch else ''}.txt"
        path, script = ("batch", "post_batch.lua") if args.batch else ("", "post_single.lua")
        try:
            spy = subprocess.Popen(
                [
                    "py-spy",
                    "record",
                    "--format",
                    "raw",
                    "--nonblocking",
                    "--duration",
                    str(args.seconds),
                    "--rate",
                    "200",
                    "--pid",
                    str(service.pid),
                    "--output",
                    str(collapsed),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            result: dict = {}
            load = threading.Thread(
                target=lambda: result.update(
                    wrk(
                        f"http://127.0.0.1:{port}/ingest/market-data/{path}",
                        args.concurrency,
                        args.seconds + 1,
                        "PROF",
                        script=script,
                        BENCH_BATCH=str(args.batch),
                    )
                )
            )
            load.start()
            spy.wait()
            load.join()
        finally:
            service.terminate()
            service.wait(10)
    finally:
        pg.destroy()
    print(f"wrk C={args.concurrency}: {result['rps']} req/s, p99 {result['p99_ms']} ms, errors {result['errors']}")
    print(summarise(collapsed, args.top))


if __name__ == "__main__":
    main()
