"""Benchmark the ingestion service against PostgreSQL itself and against the design it replaces.

    scripts/bench [--seconds 8] [--skip-deploy]

Everything runs on this machine against one throwaway PostgreSQL cluster, in one run, so the
ratios (API / raw single-row inserts, API batch / COPY, new / old design) hold on noisy machines.
Writes bench/results/results.md, results.json and throughput.png, and prints a one-line summary.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "app"))

from tests.support.pgcluster import PgCluster, free_port  # noqa: E402 - app/ goes on the path first

RESULTS = ROOT / "bench" / "results"
CONCURRENCY = (1, 8, 32)
BATCH_SMALL = 20  # records per request of the small-batch point (what clients often send)
API_KEY = "bench-key"
COLUMNS = ["symbol", "ts", "open", "high", "low", "close", "volume", "vwap"]
INSERT = (
    "INSERT INTO staging.market_data (symbol, ts, open, high, low, close, volume, vwap) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (symbol, ts) DO NOTHING"
)
BASE_TS = datetime(2032, 1, 1, tzinfo=UTC)


def record_json(symbol: str, n: int) -> dict:
    """The n-th distinct record of a symbol, as a client sends it."""
    return {
        "symbol": symbol,
        "ts": (BASE_TS + timedelta(milliseconds=n)).isoformat(),
        "open": "100.25",
        "high": "101.5",
        "low": "99.75",
        "close": "100.5",
        "volume": n,
        "vwap": "100.4",
    }


def row(symbol: str, n: int) -> tuple:
    return (
        symbol,
        BASE_TS + timedelta(milliseconds=n),
        Decimal("100.25"),
        Decimal("101.5"),
        Decimal("99.75"),
        Decimal("100.5"),
        n,
        Decimal("100.4"),
    )


async def raw_single(dsn: str, concurrency: int, seconds: float, tag: str) -> float:
    """asyncpg single-row INSERT ... ON CONFLICT, one connection per client, closed loop."""
    conns = [await asyncpg.connect(dsn) for _ in range(concurrency)]
    deadline = time.perf_counter() + seconds
    counts = [0] * concurrency

    async def client(i: int) -> None:
        n = 0
        while time.perf_counter() < deadline:
            await conns[i].execute(INSERT, *row(f"R{tag}{i}", n))
            n += 1
        counts[i] = n

    started = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - started
    for conn in conns:
        await conn.close()
    return sum(counts) / elapsed


async def raw_copy(dsn: str, rows: int) -> float:
    conn = await asyncpg.connect(dsn)
    records = [row("COPY", n) for n in range(rows)]
    started = time.perf_counter()
    await conn.copy_records_to_table("market_data", schema_name="staging", columns=COLUMNS, records=records)
    elapsed = time.perf_counter() - started
    await conn.close()
    return rows / elapsed


# The batch endpoint's semantics without HTTP or validation: rows as one array per column, one
# INSERT ... SELECT FROM unnest(...) ON CONFLICT per batch, a prepared statement, arrays built ahead.
UNNEST_INSERT = (
    "INSERT INTO staging.market_data (symbol, ts, open, high, low, close, volume, vwap) "
    "SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::numeric[], $4::numeric[], $5::numeric[], "
    "$6::numeric[], $7::bigint[], $8::numeric[]) ON CONFLICT (symbol, ts) DO NOTHING"
)


async def raw_unnest(dsn: str, seconds: float, batch: int = 1000, concurrency: int = 2) -> float:
    """The database's ceiling for the batch endpoint: rows/s of 1,000-row unnest INSERTs from
    `concurrency` connections (as many as batch_load's clients), closed loop."""
    conns = [await asyncpg.connect(dsn) for _ in range(concurrency)]
    statements = [await conn.prepare(UNNEST_INSERT) for conn in conns]
    prices = [[Decimal(p)] * batch for p in ("100.25", "101.5", "99.75", "100.5")]

    def columns(c: int, b: int) -> list[list]:
        numbers = range(b * batch, (b + 1) * batch)
        ts = [BASE_TS + timedelta(milliseconds=n) for n in numbers]
        return [[f"UNNEST{c}"] * batch, ts, *prices, list(numbers), prices[0]]

    # Enough for 100,000 rows/s per connection; past that the keys repeat (and conflict).
    batches = [columns(c, b) for c in range(concurrency) for b in range(max(20, int(seconds * 100)))]
    rows = 0
    deadline = time.perf_counter() + seconds

    async def client(c: int) -> None:
        nonlocal rows
        for arrays in batches[c::concurrency]:
            if time.perf_counter() >= deadline:
                return
            await statements[c].fetch(*arrays)
            rows += batch

    started = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(concurrency)))
    elapsed = time.perf_counter() - started
    for conn in conns:
        await conn.close()
    return rows / elapsed


def backfill(url: str, rows: int) -> dict:
    """Load `rows` generated records from a CSV file with the backfill client (python -m
    dw_ingest.load, its defaults: 1,000-record batches, 4 in flight), timed from start to exit."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "backfill.csv"
        with path.open("w") as f:
            f.write("symbol,ts,open,high,low,close,volume,vwap\n")
            for n in range(rows):
                ts = (BASE_TS + timedelta(seconds=n)).isoformat()
                f.write(f"FILL{n % 10},{ts},100.25,101.5,99.75,100.5,{n},100.4\n")
        key = Path(tmp) / "key"
        key.write_text(API_KEY)
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "dw_ingest.load", str(path), "--url", url, "--api-key-file", str(key), "--json"],
            cwd=ROOT / "app",
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"backfill failed ({result.returncode}): {result.stderr[-2000:]}")
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    return {
        "rows": rows,
        "seconds": round(seconds, 1),
        "rows_per_s": round(rows / seconds, 1),
        "inserted": summary["inserted"],
        "retries": summary["retries"],
    }


def start(argv: list[str], env: dict[str, str], port: int, log: Path, cwd: Path = ROOT / "app") -> subprocess.Popen:
    process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"{argv} did not start: {log.read_text()[-2000:]}")


def service_env(dsn: str, workers: int = 1, log_level: str = "warning") -> dict[str, str]:
    """The service's environment in every bench (its port is added by the caller)."""
    return {
        "PATH": os.environ["PATH"],
        "ENVIRONMENT": "testing",
        "API_KEYS": API_KEY,
        "LOG_LEVEL": log_level,
        "DATABASE_URL": dsn,
        "DB_POOL_MAX": "32",
        "WORKERS": str(workers),
    }


def add_service_arguments(parser: argparse.ArgumentParser, seconds: float) -> None:
    """The arguments of the tools that measure the service alone (cpu.py, profile.py)."""
    parser.add_argument("--seconds", type=float, default=seconds)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers of the service")
    parser.add_argument("--app-dir", type=Path, default=ROOT / "app", help="the service to measure (default app/)")


@dataclass
class Service:
    dsn: str
    port: int
    process: subprocess.Popen
    data_dir: Path


@contextlib.contextmanager
def service_on_throwaway_cluster(
    args: argparse.Namespace, database: str, log_name: str, log_level: str = "warning"
) -> Iterator[Service]:
    """A throwaway PostgreSQL with one database, and the service (from --app-dir, with --workers)
    writing to it; both gone afterwards."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    pg = PgCluster().init()
    try:
        dsn = pg.create_database(database)
        port = free_port()
        env = service_env(dsn, args.workers, log_level) | {"API_PORT": str(port)}
        process = start([sys.executable, "-m", "dw_ingest"], env, port, RESULTS / log_name, cwd=args.app_dir)
        try:
            yield Service(dsn, port, process, pg.data_dir)
        finally:
            process.terminate()
            process.wait(10)
    finally:
        pg.destroy()


def wrk(url: str, concurrency: int, seconds: float, symbol: str, **env_extra: str) -> dict:
    env = os.environ | {"BENCH_KEY": API_KEY, "BENCH_SYMBOL": symbol} | env_extra
    out = subprocess.run(
        [
            "wrk",
            "--latency",
            f"-t{min(2, concurrency)}",
            f"-c{concurrency}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            str(ROOT / "bench" / "post.lua"),
            url,
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    errors = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    errors += int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": _ms(re.search(r"^\s+50%\s+(\S+)", out, re.MULTILINE).group(1)),
        "p99_ms": _ms(re.search(r"^\s+99%\s+(\S+)", out, re.MULTILINE).group(1)),
        "errors": errors,
    }


def _ms(value: str) -> float:
    number, unit = re.match(r"([\d.]+)(\w+)", value).groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


async def batch_load(url: str, seconds: float, batch: int = 1000, concurrency: int = 2) -> float:
    """Pre-serialised 1,000-record batches over keep-alive connections: rows per second accepted."""
    bodies = [
        json.dumps([record_json(f"BATCH{c}", b * batch + i) for i in range(batch)]).encode()
        for c in range(concurrency)
        for b in range(400)
    ]
    rows = 0
    deadline = time.perf_counter() + seconds

    async def client(c: int) -> None:
        nonlocal rows
        async with httpx.AsyncClient(
            headers={"X-API-Key": API_KEY, "Content-Type": "application/json"},
            timeout=60,
        ) as http:
            for body in bodies[c::concurrency]:
                if time.perf_counter() >= deadline:
                    return
                response = await http.post(url, content=body)
                response.raise_for_status()
                rows += response.json()["received"]

    started = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(concurrency)))
    return rows / (time.perf_counter() - started)


async def open_loop(host: str, port: int, rate: float, seconds: float, connections: int = 32) -> dict:
    """Requests sent on a fixed schedule whatever the responses do; latency counted from the
    scheduled send time, so a slow response cannot hide the queueing it causes."""
    total = int(rate * seconds)
    schedule: asyncio.Queue[tuple[int, float]] = asyncio.Queue()
    start_at = time.perf_counter() + 0.5
    for i in range(total):
        schedule.put_nowait((i, start_at + i / rate))
    latencies: list[float] = []
    failures = 0

    async def connection(c: int) -> None:
        nonlocal failures
        reader, writer = await asyncio.open_connection(host, port)
        while not schedule.empty():
            i, when = schedule.get_nowait()
            await asyncio.sleep(max(0.0, when - time.perf_counter()))
            body = json.dumps(record_json("OPEN", i)).encode()
            writer.write(
                b"POST /ingest/market-data/ HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                b"X-API-Key: "
                + API_KEY.encode()
                + b"\r\nContent-Length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body
            )
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"content-length: (\d+)", head, re.IGNORECASE).group(1))
            await reader.readexactly(length)
            latencies.append((time.perf_counter() - when) * 1000)
            if not head.startswith(b"HTTP/1.1 200"):
                failures += 1
        writer.close()

    await asyncio.gather(*(connection(c) for c in range(connections)))
    latencies.sort()
    return {
        "rate": rate,
        "sent": total,
        "failures": failures,
        "p50_ms": statistics.median(latencies),
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1],
    }


def peak_rss_mb(pid: int) -> float:
    """The largest peak RSS of the process and its children: with --workers > 1 the process started
    is uvicorn's supervisor, and the requests are served by its worker processes."""
    pids = [pid] + [int(stat.parent.name) for stat in Path("/proc").glob("[0-9]*/stat") if _parent(stat) == pid]
    peaks = []
    for p in pids:
        try:
            peak = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{p}/status").read_text())
        except OSError:  # exited meanwhile
            continue
        if peak:  # a zombie has none
            peaks.append(int(peak.group(1)) / 1024)
    return max(peaks)


def _parent(stat: Path) -> int | None:
    try:
        # The command name (field 2) may hold spaces and parentheses; the fields after it do not.
        return int(stat.read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _podman_exec(name: str, *argv: str) -> None:
    subprocess.run(["podman", "exec", name, *argv], check=True, capture_output=True)


def deploy_times() -> dict:
    """Converge a bare container through the local inventory, then rerun it (idempotent).

    Timed over SSH with pipelining and one multiplexed connection, the transport an operator's
    ansible-playbook uses against a real server; the container has no network to reach, so ssh
    runs the container's sshd in inetd mode through `podman exec -i` as its ProxyCommand. A
    third run over podman exec (the molecule transport: no pipelining, several podman calls per
    task) shows what the test harness adds.
    """
    name = "dw-bench-deploy"
    try:
        # A bare systemd container from the project image, started and waited for the way
        # scripts/build-local does it (lib.sh's start_systemd_container); --replace drops any
        # leftover of an earlier run first.
        subprocess.run(
            [str(ROOT / "scripts" / "start-container"), "--replace", name],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        with tempfile.TemporaryDirectory() as tmp:
            # What a bare server already has before Ansible first reaches it: an SSH server and
            # the operator's key. Not timed.
            _podman_exec(name, "sh", "-c", "apt-get update -qq && apt-get install -y -qq openssh-server")
            _podman_exec(name, "mkdir", "-p", "-m", "0700", "/root/.ssh", "/run/sshd")
            key = Path(tmp) / "id_ed25519"
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
            subprocess.run(["podman", "cp", f"{key}.pub", f"{name}:/root/.ssh/authorized_keys"], check=True)
            _podman_exec(name, "chown", "root:root", "/root/.ssh/authorized_keys")

            (Path(tmp) / "group_vars").symlink_to(ROOT / "inventories" / "local" / "group_vars")
            ssh_args = (
                f'-o ProxyCommand="podman exec -i {name} /usr/sbin/sshd -i" -o StrictHostKeyChecking=no '
                f"-o UserKnownHostsFile=/dev/null -o ControlMaster=auto -o ControlPersist=300s "
                f"-o ControlPath={tmp}/cm-%C"
            )
            transports = {
                "ssh": f"    ansible_connection: ssh\n    ansible_user: root\n"
                f"    ansible_ssh_private_key_file: {key}\n    ansible_ssh_common_args: '{ssh_args}'\n",
                "podman": "    ansible_connection: containers.podman.podman\n",
            }
            groups = "".join(
                f"    {g}:\n      hosts:\n        {name}:\n"
                for g in ("db_servers", "api_servers", "backup_servers", "simulator_servers")
            )
            env = os.environ | {"ANSIBLE_VAULT_PASSWORD_FILE": str(ROOT / "inventories/local/vault-password.txt")}
            times = {}
            for label, transport in (("converge_s", "ssh"), ("rerun_s", "ssh"), ("rerun_podman_s", "podman")):
                inventory = Path(tmp) / f"{transport}.yml"
                inventory.write_text(f"all:\n  vars:\n{transports[transport]}  children:\n{groups}")
                started = time.perf_counter()
                result = subprocess.run(
                    ["ansible-playbook", "-i", str(inventory), "site.yml"],
                    cwd=ROOT,
                    env=env,
                    capture_output=True,
                    text=True,
                )
                times[label] = round(time.perf_counter() - started, 1)
                if result.returncode != 0:
                    raise RuntimeError(result.stdout[-3000:])
                if label != "converge_s":
                    times[label.replace("_s", "_changed")] = int(re.findall(r"changed=(\d+)", result.stdout)[-1])
            return times
    finally:
        subprocess.run(["podman", "rm", "-f", name], capture_output=True)


def ratio(a: float, b: float) -> float:
    return round(a / b, 2) if b else 0.0


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="uvicorn workers of the service under test",
    )
    parser.add_argument("--skip-deploy", action="store_true")
    parser.add_argument(
        "--app-dir",
        type=Path,
        default=ROOT / "app",
        help="the service to measure (default app/; e.g. an older commit's app/ from git archive)",
    )
    parser.add_argument(
        "--backfill-rows",
        type=int,
        default=1_000_000,
        help="rows the backfill client (python -m dw_ingest.load) loads from a generated file; 0 skips it",
    )
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    pg = PgCluster().init()
    results: dict = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "seconds_per_point": args.seconds,
        "workers": args.workers,
        "app_dir": str(args.app_dir),
        # The machine is shared: the load around the run says how far its absolute numbers mean anything.
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }
    try:
        dsn = pg.create_database("bench")
        new_port, old_port = free_port(), free_port()
        base_env = service_env(dsn, args.workers)
        new = start(
            [sys.executable, "-m", "dw_ingest"],
            base_env | {"API_PORT": str(new_port)},
            new_port,
            RESULTS / "service.log",
            cwd=args.app_dir,
        )
        old = start(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--app-dir",
                str(ROOT),
                "bench.old_service:app",
                "--port",
                str(old_port),
                "--log-level",
                "warning",
            ],
            base_env | {"DATABASE_URL": dsn.replace("postgresql://", "postgresql+asyncpg://")},
            old_port,
            RESULTS / "old_service.log",
        )
        try:
            results["raw_single_rps"], results["api_single"], results["old_single"] = (
                {},
                {},
                {},
            )
            for c in CONCURRENCY:
                results["raw_single_rps"][c] = round(await raw_single(dsn, c, args.seconds, f"C{c}"), 1)
                results["api_single"][c] = wrk(
                    f"http://127.0.0.1:{new_port}/ingest/market-data/",
                    c,
                    args.seconds,
                    f"N{c}T",
                )
                results["old_single"][c] = wrk(
                    f"http://127.0.0.1:{old_port}/ingest/market-data/",
                    c,
                    args.seconds,
                    f"O{c}T",
                )
            results["api_peak_rss_mb"] = round(peak_rss_mb(new.pid), 1)
            results["raw_copy_rows_per_s"] = round(await raw_copy(dsn, 100_000), 1)
            results["api_batch_rows_per_s"] = round(
                await batch_load(
                    f"http://127.0.0.1:{new_port}/ingest/market-data/batch",
                    args.seconds,
                ),
                1,
            )
            results["raw_unnest_rows_per_s"] = round(await raw_unnest(dsn, args.seconds), 1)
            batch20 = wrk(
                f"http://127.0.0.1:{new_port}/ingest/market-data/batch",
                8,
                args.seconds,
                "B20T",
                BENCH_BATCH=str(BATCH_SMALL),
            )
            results["api_batch20_c8"] = batch20 | {"rows_per_s": round(batch20["rps"] * BATCH_SMALL, 1)}
            results["api_peak_rss_mb"] = max(results["api_peak_rss_mb"], round(peak_rss_mb(new.pid), 1))
            if args.backfill_rows:
                results["backfill"] = backfill(f"http://127.0.0.1:{new_port}", args.backfill_rows)
                results["api_peak_rss_mb"] = max(results["api_peak_rss_mb"], round(peak_rss_mb(new.pid), 1))
            peak = max(v["rps"] for v in results["api_single"].values())
            results["open_loop"] = await open_loop("127.0.0.1", new_port, peak * 0.5, args.seconds)
        finally:
            for process in (new, old):
                process.terminate()
                process.wait(10)
    finally:
        pg.destroy()
    results["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    if not args.skip_deploy:
        results["deploy"] = deploy_times()

    results["ratios"] = {
        **{
            f"api_vs_raw_single_c{c}": ratio(results["api_single"][c]["rps"], results["raw_single_rps"][c])
            for c in CONCURRENCY
        },
        "api_batch_vs_copy": ratio(results["api_batch_rows_per_s"], results["raw_copy_rows_per_s"]),
        "api_batch_vs_unnest": ratio(results["api_batch_rows_per_s"], results["raw_unnest_rows_per_s"]),
        "api_batch20_vs_unnest": ratio(results["api_batch20_c8"]["rows_per_s"], results["raw_unnest_rows_per_s"]),
        **(
            {"backfill_vs_copy": ratio(results["backfill"]["rows_per_s"], results["raw_copy_rows_per_s"])}
            if "backfill" in results
            else {}
        ),
        "new_vs_old_c8": ratio(results["api_single"][8]["rps"], results["old_single"][8]["rps"]),
    }
    (RESULTS / "results.json").write_text(json.dumps(results, indent=2))
    write_markdown(results)
    plot(results)
    print(summary(results))


TARGETS = {"api_vs_raw_single_c8": 1.0, "api_batch_vs_unnest": 0.8, "api_batch_vs_copy": 0.7, "new_vs_old_c8": 3.0}


def summary(r: dict) -> str:
    q = r["ratios"]
    parts = [
        f"api/raw@8={q['api_vs_raw_single_c8']}x (target 1.0)",
        f"batch/unnest={q['api_batch_vs_unnest']}x (0.8)",
        f"batch/copy={q['api_batch_vs_copy']}x (0.7)",
        f"batch20={r['api_batch20_c8']['rows_per_s']:.0f} rows/s",
        f"new/old@8={q['new_vs_old_c8']}x (3.0)",
        f"open-loop p99={r['open_loop']['p99_ms']:.1f}ms (<20)",
        f"rss={r['api_peak_rss_mb']}MB (<150)",
        f"load={r['loadavg_start'][0]}->{r['loadavg_end'][0]}",
    ]
    if "backfill" in r:
        parts.append(f"backfill={r['backfill']['rows_per_s']:.0f} rows/s ({q['backfill_vs_copy']}x COPY)")
    if "deploy" in r:
        parts.append(f"deploy={r['deploy']['converge_s']}s rerun={r['deploy']['rerun_s']}s (<60)")
    return "bench: " + ", ".join(parts)


def write_markdown(r: dict) -> None:
    lines = [
        f"# dw-platform benchmark ({r['when']}, {r['cpus']} CPUs, {r['seconds_per_point']} s per point, "
        f"{r['workers']} worker(s), load average {r['loadavg_start'][0]} at start, {r['loadavg_end'][0]} at end)",
        "",
        "| concurrency | raw insert rows/s | API req/s | API p50 ms | API p99 ms | API errors | old req/s | "
        "old p99 ms | API/raw | new/old |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in CONCURRENCY:
        a, o, raw = r["api_single"][c], r["old_single"][c], r["raw_single_rps"][c]
        lines.append(
            f"| {c} | {raw} | {a['rps']} | {a['p50_ms']:.2f} | {a['p99_ms']:.2f} | {a['errors']} | "
            f"{o['rps']} | {o['p99_ms']:.2f} | {ratio(a['rps'], raw)} | {ratio(a['rps'], o['rps'])} |"
        )
    ol = r["open_loop"]
    lines += [
        "",
        "| measure | value | target |",
        "|---|---|---|",
        f"| raw COPY rows/s | {r['raw_copy_rows_per_s']} | |",
        f"| API batch (1,000 records) rows/s | {r['api_batch_rows_per_s']} | |",
        f"| raw unnest INSERT (1,000 rows, prepared arrays, 2 connections) rows/s | {r['raw_unnest_rows_per_s']} | |",
        f"| API batch / unnest INSERT (the database's ceiling for its semantics) | "
        f"{r['ratios']['api_batch_vs_unnest']} | >= 0.8 |",
        f"| API batch / COPY | {r['ratios']['api_batch_vs_copy']} | >= 0.7 |",
        f"| API 20-record batches at C=8 rows/s | {r['api_batch20_c8']['rows_per_s']} "
        f"(p99 {r['api_batch20_c8']['p99_ms']:.2f} ms, {r['api_batch20_c8']['errors']} errors; "
        f"{r['ratios']['api_batch20_vs_unnest']} of unnest) | |",
        f"| API / raw single at C=8 | {r['ratios']['api_vs_raw_single_c8']} | >= 1.0 |",
        f"| new / old design at C=8 | {r['ratios']['new_vs_old_c8']} | >= 3 |",
        f"| open-loop p99 at {ol['rate']:.0f} req/s (50% of peak) | {ol['p99_ms']:.2f} ms "
        f"({ol['failures']} failures of {ol['sent']}) | < 20 ms |",
        f"| peak RSS of one API process | {r['api_peak_rss_mb']} MB | < 150 MB |",
    ]
    if "backfill" in r:
        b = r["backfill"]
        lines.append(
            f"| backfill client, {b['rows']:,} generated rows from a CSV file, rows/s | {b['rows_per_s']} "
            f"({r['ratios']['backfill_vs_copy']} of COPY; {b['seconds']} s, {b['inserted']:,} inserted) | |"
        )
    if "deploy" in r:
        d = r["deploy"]
        lines += [
            f"| converge, bare container to ready | {d['converge_s']} s | |",
            f"| idempotent rerun, over SSH | {d['rerun_s']} s (changed={d['rerun_changed']}) | < 60 s |",
            f"| idempotent rerun, over podman exec (molecule's transport) | {d['rerun_podman_s']} s "
            f"(changed={d['rerun_podman_changed']}) | |",
        ]
    (RESULTS / "results.md").write_text("\n".join(lines) + "\n")


def plot(r: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    xs = list(CONCURRENCY)
    ax.plot(
        xs,
        [r["raw_single_rps"][c] for c in xs],
        "o-",
        label="raw asyncpg INSERT (rows/s)",
    )
    ax.plot(
        xs,
        [r["api_single"][c]["rps"] for c in xs],
        "s-",
        label="API single record (req/s)",
    )
    ax.plot(xs, [r["old_single"][c]["rps"] for c in xs], "^-", label="old design (req/s)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.set_xlabel("concurrency (closed loop)")
    ax.set_ylabel("per second")
    ax.set_title("Ingest throughput against concurrency")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "throughput.png", dpi=120)


if __name__ == "__main__":
    asyncio.run(main())
