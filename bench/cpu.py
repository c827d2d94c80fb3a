"""Where the cores go: CPU time per record of each party, for the API and for its raw baselines.

    .venv/bin/python bench/cpu.py [--seconds 8] [--concurrency 8] [--workers 1] [--app-dir DIR]

Starts a throwaway PostgreSQL and the service (as bench/run.py does), then measures one after the
other: raw single-row INSERTs at C, the single-record endpoint under wrk at C, the raw unnest INSERTs
and the batch endpoint. For each it reads the CPU time (user + system, from /proc) that the service's
processes, PostgreSQL's (live backends and those that exited) and the client (this process, or wrk)
used, and divides by the records written. Throughput on a shared machine moves with the other load;
CPU per record moves much less, and says which party a faster path has to make cheaper.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from run import API_KEY, RESULTS, batch_load, raw_single, raw_unnest, start, wrk  # noqa: E402 - bench/ first
from tests.support.pgcluster import PgCluster, free_port  # noqa: E402

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        # The command name (field 2) may hold spaces and parentheses; the fields after it do not.
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def tree_cpu(root: int) -> float:
    """CPU seconds of a process, its children alive now, and the children it has reaped (a
    postmaster reaps every backend that exits, so their time is counted too)."""
    fields = _stat(root)
    total = sum(int(f) for f in fields[11:15]) if fields else 0  # utime stime cutime cstime
    for stat in Path("/proc").glob("[0-9]*/stat"):
        child = _stat(int(stat.parent.name))
        if child and int(child[1]) == root:
            total += int(child[11]) + int(child[12])
    return total / _TICK


def own_cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def measure(label: str, run: Callable[[], float], seconds: float, parties: dict[str, Callable[[], float]]) -> None:
    """Runs `run` (it returns records per second) and prints each party's CPU µs per record."""
    before = {name: read() for name, read in parties.items()}
    rate = run()
    used = {name: read() - before[name] for name, read in parties.items()}
    records = rate * seconds
    shares = ", ".join(f"{name} {1e6 * cpu / records:.1f}" for name, cpu in used.items())
    print(f"{label}: {rate:.0f}/s; CPU µs per record: {shares} (load average {os.getloadavg()[0]:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--app-dir", type=Path, default=ROOT / "app", help="the service to measure (default app/)")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    pg = PgCluster().init()
    try:
        dsn = pg.create_database("cpu")
        postmaster = int((pg.data_dir / "postmaster.pid").read_text().split()[0])
        port = free_port()
        env = {
            "PATH": os.environ["PATH"],
            "ENVIRONMENT": "testing",
            "API_KEYS": API_KEY,
            "LOG_LEVEL": "warning",
            "DATABASE_URL": dsn,
            "DB_POOL_MAX": "32",
            "WORKERS": str(args.workers),
            "API_PORT": str(port),
        }
        service = start([sys.executable, "-m", "dw_ingest"], env, port, RESULTS / "cpu-service.log", cwd=args.app_dir)
        try:
            c, seconds = args.concurrency, args.seconds
            db = {"postgresql": lambda: tree_cpu(postmaster)}
            api = {"service": lambda: tree_cpu(service.pid), **db}
            measure(
                f"raw single-row INSERT, C={c}",
                lambda: asyncio.run(raw_single(dsn, c, seconds, "CPU")),
                seconds,
                {"client (asyncpg)": lambda: own_cpu(resource.RUSAGE_SELF), **db},
            )
            measure(
                f"API single record, C={c}",
                lambda: wrk(f"http://127.0.0.1:{port}/ingest/market-data/", c, seconds, "CPUW")["rps"],
                seconds,
                # wrk is a child this process has waited for: RUSAGE_CHILDREN holds its time.
                {"client (wrk)": lambda: own_cpu(resource.RUSAGE_CHILDREN), **api},
            )
            # The two below build their rows or bodies before the clock starts; that work is in the
            # client's figure, so only the service's and PostgreSQL's compare.
            measure(
                "raw unnest INSERT, 1,000 rows",
                lambda: asyncio.run(raw_unnest(dsn, seconds)),
                seconds,
                {"client (asyncpg)": lambda: own_cpu(resource.RUSAGE_SELF), **db},
            )
            measure(
                "API batch, 1,000 records",
                lambda: asyncio.run(batch_load(f"http://127.0.0.1:{port}/ingest/market-data/batch", seconds)),
                seconds,
                {"client (httpx)": lambda: own_cpu(resource.RUSAGE_SELF), **api},
            )
        finally:
            service.terminate()
            service.wait(10)
    finally:
        pg.destroy()


if __name__ == "__main__":
    main()
