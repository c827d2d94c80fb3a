"""Where the cores go: CPU time per record of each party, for the API and for its raw baselines.

    .venv/bin/python bench/cpu.py [--seconds 8] [--concurrency 8] [--workers 1] [--app-dir DIR]

Starts a throwaway PostgreSQL and the service (as bench/run.py does), then measures one after the
other: raw single-row INSERTs at C, the single-record endpoint under wrk at C, the same wrk load on a
bare ASGI app on the same uvicorn (bare_app.py: the HTTP floor, no validation and no database), the
raw unnest INSERTs and the batch endpoint. For each it reads the CPU time (user + system, from /proc) that the service's
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

from run import (  # noqa: E402 - bench/ goes on the path first
    RESULTS,
    add_service_arguments,
    batch_load,
    raw_single,
    raw_unnest,
    service_on_throwaway_cluster,
    start,
    wrk,
)
from tests.support.pgcluster import free_port  # noqa: E402

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
    add_service_arguments(parser, seconds=8)
    args = parser.parse_args()
    with service_on_throwaway_cluster(args, "cpu", "cpu-service.log") as service:
        dsn, port = service.dsn, service.port
        postmaster = int((service.data_dir / "postmaster.pid").read_text().split()[0])
        c, seconds = args.concurrency, args.seconds
        db = {"postgresql": lambda: tree_cpu(postmaster)}
        api = {"service": lambda: tree_cpu(service.process.pid), **db}
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
        # The floor: the same wrk load on a bare ASGI app (bare_app.py) on the same uvicorn.
        bare_port = free_port()
        uvicorn = [sys.executable, "-m", "uvicorn", "--app-dir", str(ROOT / "bench"), "--loop", "uvloop"]
        uvicorn += ["--http", "httptools", "--no-access-log", "--log-level", "warning", "--port", str(bare_port)]
        bare = start(
            [*uvicorn, "bare_app:app"],
            {"PATH": os.environ["PATH"]},
            bare_port,
            RESULTS / "cpu-bare-app.log",
        )
        try:
            measure(
                f"bare ASGI app on uvicorn (the HTTP floor), C={c}",
                lambda: wrk(f"http://127.0.0.1:{bare_port}/ingest/market-data/", c, seconds, "BARE")["rps"],
                seconds,
                {"client (wrk)": lambda: own_cpu(resource.RUSAGE_CHILDREN), "bare app": lambda: tree_cpu(bare.pid)},
            )
        finally:
            bare.terminate()
            bare.wait(10)
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


if __name__ == "__main__":
    main()
