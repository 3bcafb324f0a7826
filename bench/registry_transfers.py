"""Registry transfers per second, durable, with the journal chained (DESIGN §11).

    python bench/registry_transfers.py --json
    CARBONHUB_DATABASE_URL=postgresql:///postgres python bench/registry_transfers.py --json

SQLite (default): a fresh temporary database file per repeat, WAL with synchronous=FULL as the
engine sets it. PostgreSQL (CARBONHUB_DATABASE_URL set): a fresh database per repeat on that
server, dropped afterwards; the same invocation initialises a scratch pgbench database, runs
pgbench's TPC-B-like script after every repeat and reports `pgbench_tps` and
`ratio` = transfers_per_s / pgbench_tps (medians of both). Existing databases are never touched.

Setup (not timed): migrate, bootstrap, ~50 enterprises each with a user and an open holding
account, units issued and allocated to them, all through the services (maker–checker with two
operators). Timed: random valid transfers between those accounts, each submitted by the sending
account's enterprise user (operators may not start plain transfers), either one command per
transaction (`--batch 1`: RegistryService.transfer, random sender each time) or as group commits
(RegistryService.transfer_many: one transaction, one idempotency key and one result per command;
it takes one actor, so a submission is B transfers from one random sender to random receivers),
from C client threads. With several clients each one moves units among its own share of the
accounts, so concurrent transactions never lock the same accounts in opposite orders; a deadlock
or serialization failure (PostgreSQL) or an expired busy wait (SQLite) is retried with the same
keys, which idempotency makes safe.
After each timed phase carbonhub.verify.verify(db) runs (not timed); a failed check exits 1.

stdout gets one JSON object with --json (a short text summary otherwise); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import cProfile
import glob
import hashlib
import itertools
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from benchlib import setup_holders
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError

from carbonhub.core.auth import Actor
from carbonhub.core.db import Database, normalise_url
from carbonhub.core.settings import Settings
from carbonhub.registry import store
from carbonhub.registry.service import RegistryService
from carbonhub.verify import verify

UNIT_CLASS = "CEA-2023"
SQLITE_TARGET_TPS = 5_000.0
PG_TARGET_RATIO = 0.5
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})  # deadlock detected, serialization failure
MAX_ATTEMPTS = 10
Command = dict[str, Any]


def log(message: str) -> None:
    print(f"[registry_transfers] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ databases


def pg_url(url: str, database: str) -> URL:
    """The SQLAlchemy URL of another database on the same PostgreSQL server."""
    return make_url(normalise_url(url)).set(database=database)


def libpq_url(url: str, database: str) -> str:
    """A libpq connection URI (for pgbench) naming `database` on the same server."""
    u = make_url(url).set(drivername="postgresql", database=database)
    return u.render_as_string(hide_password=False)


@contextmanager
def scratch_pg_database(admin: sa.Engine, prefix: str) -> Iterator[str]:
    """CREATE a uniquely named database and DROP it afterwards, whatever happens."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with admin.connect() as c:
        c.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with admin.connect() as c:
            c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def fresh_database(base_url: str | None, admin: sa.Engine | None) -> Iterator[Database]:
    """A fresh, empty carbonhub database: a temp SQLite file, or a new PostgreSQL database."""
    if base_url is None or admin is None:
        tmp = Path(tempfile.mkdtemp(prefix="carbonhub-bench-"))
        db = Database(bench_settings(f"sqlite:///{tmp / 'carbonhub.db'}"))
        try:
            yield db
        finally:
            db.dispose()
            shutil.rmtree(tmp, ignore_errors=True)
        return
    with scratch_pg_database(admin, "carbonhub_bench") as name:
        db = Database(bench_settings(pg_url(base_url, name).render_as_string(hide_password=False)))
        try:
            yield db
        finally:
            db.dispose()


def bench_settings(url: str) -> Settings:
    # Pinned so the environment cannot turn the run into something else: no per-command
    # invariant re-check (debug mode) and no delay on transfers outside the trusted list.
    return Settings(database_url=url, check_invariants=False, untrusted_delay_minutes=0)


def durability_settings(db: Database) -> dict[str, Any]:
    with db.engine.connect() as c:
        if db.backend == "sqlite":
            return {
                "journal_mode": c.exec_driver_sql("PRAGMA journal_mode").scalar(),
                "synchronous": {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(
                    int(c.exec_driver_sql("PRAGMA synchronous").scalar() or 0), "?"
                ),
                "sqlite_version": c.exec_driver_sql("select sqlite_version()").scalar(),
            }
        names = (
            "server_version",
            "fsync",
            "synchronous_commit",
            "wal_sync_method",
            "full_page_writes",
            "shared_buffers",
        )
        return {n: c.exec_driver_sql(f"SHOW {n}").scalar() for n in names}


def code_version() -> dict[str, Any]:
    """Which code was measured: the git commit, whether the tree differs from it, and a digest
    of the carbonhub sources actually imported (others may be editing them meanwhile)."""
    import carbonhub

    src = Path(carbonhub.__file__).resolve().parent
    digest = hashlib.sha256()
    for f in sorted(src.rglob("*.py")):
        digest.update(f.relative_to(src).as_posix().encode())
        digest.update(f.read_bytes())
    out: dict[str, Any] = {"sources_sha256": digest.hexdigest()[:16]}
    try:

        def git(*a: str) -> str:
            return subprocess.run(
                ["git", "-C", str(src), *a], capture_output=True, text=True, check=True, timeout=10
            ).stdout.strip()

        out["commit"] = git("rev-parse", "--short", "HEAD")
        out["dirty"] = bool(git("status", "--porcelain", "--", "."))
    except (OSError, subprocess.SubprocessError):
        pass
    return out


# ------------------------------------------------------------------ setup (not timed)


@dataclass
class Market:
    db: Database
    reg: RegistryService
    holders: dict[str, Actor]  # holding account → the enterprise user who may move its units
    allocation: int

    @property
    def accounts(self) -> list[str]:
        return list(self.holders)


def setup_market(db: Database, enterprises: int, allocation: int, tag: str) -> Market:
    """Two operators (maker and checker) and `enterprises` enterprises, each with a user and an
    open holding account that receives `allocation` t of freshly issued CEA."""
    h = setup_holders(db, enterprises, allocation, UNIT_CLASS, tag, "企业")
    return Market(db, h.reg, dict(zip(h.accounts, h.actors, strict=True)), allocation)


def plan(
    accounts: Sequence[str],
    n: int,
    clients: int,
    batch: int,
    max_quantity: int,
    allocation: int,
    seed: int,
    tag: str,
) -> list[list[list[Command]]]:
    """Random transfers as submissions (lists of commands), one list of submissions per client.

    A submission is what one holder sends at once: `batch` transfers from one random sender of
    the client's share of the accounts to random others (transfer_many takes one actor). A
    sender's planned outflow never exceeds its allocation, so every transfer is valid in any
    interleaving of the clients (inflows are not counted on).
    """
    rng = random.Random(seed)
    groups = [list(accounts[c::clients]) for c in range(clients)]
    if any(len(g) < 2 for g in groups):
        raise SystemExit(f"--clients {clients} needs at least {2 * clients} enterprises")
    budget = dict.fromkeys(accounts, allocation)
    streams: list[list[list[Command]]] = [[] for _ in range(clients)]
    i = 0
    for k in itertools.count():
        if i >= n:
            break
        c = k % clients
        size = min(batch, n - i)
        quantities = [rng.randint(1, max_quantity) for _ in range(size)]
        src = rng.choice(groups[c])
        if budget[src] < sum(quantities):
            raise SystemExit("allocation too small for this plan: raise --allocation")
        budget[src] -= sum(quantities)
        others = [a for a in groups[c] if a != src]
        streams[c].append(
            [
                {
                    "key": f"bench-{tag}-{i + j:09d}",
                    "from_account": src,
                    "to_account": rng.choice(others),
                    "unit_class": UNIT_CLASS,
                    "quantity": q,
                    "reason": "",
                }
                for j, q in enumerate(quantities)
            ]
        )
        i += size
    return streams


# ------------------------------------------------------------------ timed phase


def _retryable(err: DBAPIError) -> bool:
    """Deadlock or serialization failure (PostgreSQL); SQLite's busy timeout running out while
    other clients hold the write lock. The transaction was rolled back, nothing was applied."""
    if getattr(err.orig, "sqlstate", None) in RETRYABLE_SQLSTATES:
        return True
    return isinstance(err.orig, sqlite3.OperationalError) and "locked" in str(err.orig)


@dataclass
class StreamStats:
    retries: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)


def run_stream(
    reg: RegistryService,
    holders: dict[str, Actor],
    submissions: Sequence[list[Command]],
) -> StreamStats:
    """Submit one client's transfers: transfer_many per submission, or transfer for singles."""
    stats = StreamStats()

    def submit(chunk: list[Command]) -> list[dict[str, Any]]:
        actor = holders[chunk[0]["from_account"]]
        if len(chunk) > 1:
            return reg.transfer_many(actor, chunk)
        c = chunk[0]
        return [
            reg.transfer(
                actor,
                c["key"],
                from_account=c["from_account"],
                to_account=c["to_account"],
                unit_class=c["unit_class"],
                quantity=c["quantity"],
                reason=c["reason"],
            )
        ]

    for chunk in submissions:
        for _attempt in range(MAX_ATTEMPTS):
            try:
                results = submit(chunk)
                break
            except DBAPIError as err:
                if not _retryable(err):
                    raise
                stats.retries += 1  # same idempotency keys: a retry cannot apply a command twice
        else:
            raise RuntimeError(f"gave up after {MAX_ATTEMPTS} deadlocks/serialization failures")
        stats.errors.extend(r for r in results if "error" in r)
    return stats


class StatementCounter:
    """Counts SQL statements by verb and table while attached (an executemany counts once)."""

    _TABLE = re.compile(r"\b(?:FROM|INTO|UPDATE)\s+\"?(\w+)", re.IGNORECASE)

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _on_execute(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        verb = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else "?"
        m = self._TABLE.search(statement)
        label = f"{verb} {m.group(1)}" if m else verb
        with self._lock:
            self.counts[label] += 1

    def __enter__(self) -> StatementCounter:
        sa.event.listen(self.engine, "before_cursor_execute", self._on_execute)
        return self

    def __exit__(self, *_exc: object) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self._on_execute)


def timed_transfers(
    market: Market,
    streams: list[list[list[Command]]],
    profile: cProfile.Profile | None,
) -> tuple[float, float, list[StreamStats]]:
    """Wall seconds and this process's CPU seconds (all threads) for submitting every stream."""
    reg, holders = market.reg, market.holders
    if len(streams) == 1:
        if profile is not None:
            profile.enable()
        t0, c0 = time.perf_counter(), time.process_time()
        stats = [run_stream(reg, holders, streams[0])]
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        if profile is not None:
            profile.disable()
        return seconds, cpu, stats
    gate = threading.Event()

    def client(submissions: list[list[Command]]) -> StreamStats:
        gate.wait()
        return run_stream(reg, holders, submissions)

    with ThreadPoolExecutor(max_workers=len(streams)) as pool:
        futures = [pool.submit(client, s) for s in streams]
        time.sleep(0.05)  # let every client reach the gate
        t0, c0 = time.perf_counter(), time.process_time()
        gate.set()
        stats = [f.result() for f in futures]
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return seconds, cpu, stats


@dataclass
class Run:
    transfers: int
    seconds: float
    cpu_seconds: float
    transfers_per_s: float
    verified: bool
    journal_entries: int
    retries: int
    problems: list[str]
    load_avg_1m: float
    statements_per_transfer: dict[str, float] | None = None

    @property
    def transfers_per_cpu_s(self) -> float:
        # This process's CPU only: on a busy machine closer to what an idle one would do (on
        # SQLite it leaves out fsync waits; on PostgreSQL the server's work).
        return self.transfers / self.cpu_seconds if self.cpu_seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "seconds": round(self.seconds, 4),
            "cpu_seconds": round(self.cpu_seconds, 4),
            "transfers_per_s": round(self.transfers_per_s, 1),
            "transfers_per_cpu_s": round(self.transfers_per_cpu_s, 1),
            "verified": self.verified,
            "journal_entries": self.journal_entries,
            "retries": self.retries,
            "load_avg_1m": round(self.load_avg_1m, 2),
        }
        if self.problems:
            out["problems"] = self.problems[:20]
        if self.statements_per_transfer is not None:
            out["statements_per_transfer"] = self.statements_per_transfer
        return out


def one_run(args: argparse.Namespace, db: Database, index: int) -> Run:
    tag = f"r{index}-{uuid.uuid4().hex[:6]}"
    mean_outflow = args.transfers * (args.max_quantity + 1) // 2 // args.enterprises
    allocation = args.allocation or max(
        1_000_000, 4 * mean_outflow, 4 * args.batch * args.max_quantity
    )
    t_setup = time.perf_counter()
    market = setup_market(db, args.enterprises, allocation, tag)
    streams = plan(
        market.accounts,
        args.transfers,
        args.clients,
        args.batch,
        args.max_quantity,
        allocation,
        args.seed + index,
        tag,
    )
    log(
        f"run {index + 1}: setup {time.perf_counter() - t_setup:.1f}s "
        f"({args.enterprises} accounts, {allocation} t each); timing {args.transfers} transfers"
    )
    profile = cProfile.Profile() if args.profile else None
    counter = StatementCounter(db.engine) if args.count_statements else None
    if counter is not None:
        with counter:
            seconds, cpu, stats = timed_transfers(market, streams, profile)
    else:
        seconds, cpu, stats = timed_transfers(market, streams, profile)
    if profile is not None:
        path = f"{args.profile}.{index}" if args.repeat > 1 else args.profile
        profile.dump_stats(path)
        log(f"run {index + 1}: cProfile of the timed phase written to {path}")
    errors = [e for s in stats for e in s.errors]
    if errors:
        raise SystemExit(f"{len(errors)} transfers were rejected, e.g. {errors[:3]}")
    t_verify = time.perf_counter()
    report = verify(db)
    problems = list(report.problems)
    with db.engine.connect() as c:
        done = c.execute(
            sa.select(sa.func.count())
            .select_from(store.transfers)
            .where(store.transfers.c.op == "TRANSFER", store.transfers.c.status == "COMPLETED")
        ).scalar_one()
    if done != args.transfers:
        problems.append(f"{done} completed transfers stored, {args.transfers} submitted")
    rate = args.transfers / seconds
    load = os.getloadavg()[0]  # other work on the machine during the timed phase, roughly
    log(
        f"run {index + 1}: {seconds:.2f}s ({cpu:.2f}s CPU here), {rate:,.0f} transfers/s; verify "
        f"{time.perf_counter() - t_verify:.1f}s: {'ok' if not problems else problems[:3]}"
    )
    per: dict[str, float] | None = None
    if counter is not None:
        per = {k: round(v / args.transfers, 3) for k, v in counter.counts.most_common()}
        per = {"total": round(sum(counter.counts.values()) / args.transfers, 3), **per}
    retries = sum(s.retries for s in stats)
    return Run(
        args.transfers,
        seconds,
        cpu,
        rate,
        not problems,
        report.entries,
        retries,
        problems,
        load,
        per,
    )


# ------------------------------------------------------------------ pgbench


def find_pgbench(explicit: str | None) -> str:
    if explicit:
        return explicit
    found = shutil.which("pgbench") or next(
        iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/pgbench"), reverse=True)), None
    )
    if found is None:
        raise SystemExit("pgbench not found: install it or pass --pgbench PATH")
    return found


_TPS = re.compile(r"^tps = ([0-9.]+) \(without initial connection time\)", re.MULTILINE)
_TPS_ANY = re.compile(r"^tps = ([0-9.]+)", re.MULTILINE)


class PgBench:
    """pgbench's TPC-B-like script against a scratch database on the same server."""

    def __init__(self, binary: str, conninfo: str, args: argparse.Namespace) -> None:
        self.binary, self.conninfo, self.args = binary, conninfo, args
        self.runs: list[float] = []

    def _run(self, argv: list[str]) -> str:
        res = subprocess.run(
            [self.binary, *argv, self.conninfo], capture_output=True, text=True, check=False
        )
        if res.returncode != 0:
            raise SystemExit(f"pgbench {' '.join(argv)} failed:\n{res.stderr[-2000:]}")
        return res.stdout + res.stderr

    def initialise(self) -> None:
        self._run(["-i", "-q", "-s", str(self.args.pgbench_scale)])

    def run(self) -> float:
        a = self.args
        out = self._run(
            ["-c", str(a.pgbench_clients), "-j", str(a.pgbench_jobs), "-T", str(a.pgbench_seconds)]
        )
        m = _TPS.search(out) or _TPS_ANY.search(out)
        if m is None:
            raise SystemExit(f"cannot read tps from pgbench output:\n{out[-2000:]}")
        tps = float(m.group(1))
        self.runs.append(tps)
        log(
            f"pgbench -s {a.pgbench_scale} -c {a.pgbench_clients} -j {a.pgbench_jobs} "
            f"-T {a.pgbench_seconds}: {tps:,.0f} tps"
        )
        return tps


# ------------------------------------------------------------------ main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--transfers", type=int, default=20_000, help="transfers per run")
    p.add_argument(
        "--batch",
        type=int,
        default=500,
        help="commands per group-commit transaction; 1 = RegistryService.transfer",
    )
    p.add_argument("--clients", type=int, default=1, help="threads submitting concurrently")
    p.add_argument("--repeat", type=int, default=3, help="runs; the median is reported")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--enterprises", type=int, default=50, help="holding accounts in the market")
    p.add_argument("--max-quantity", type=int, default=100, help="tonnes per transfer: 1..N")
    p.add_argument(
        "--allocation",
        type=int,
        default=0,
        help="tonnes allocated to each account (0: sized to the plan)",
    )
    p.add_argument("--seed", type=int, default=20231)
    p.add_argument(
        "--count-statements",
        action="store_true",
        help="count SQL statements per transfer (adds a little overhead)",
    )
    p.add_argument(
        "--profile",
        metavar="PATH",
        help="cProfile the timed phase (single client) and dump pstats to PATH",
    )
    g = p.add_argument_group("pgbench (PostgreSQL only)")
    g.add_argument("--pgbench", metavar="PATH", help="pgbench binary (default: from PATH)")
    g.add_argument("--pgbench-scale", type=int, default=10)
    g.add_argument("--pgbench-clients", type=int, default=8)
    g.add_argument("--pgbench-jobs", type=int, default=2)
    g.add_argument("--pgbench-seconds", type=int, default=15)
    g.add_argument("--skip-pgbench", action="store_true", help="no reference run (no ratio)")
    args = p.parse_args(argv)
    if args.transfers < 1 or args.batch < 1 or args.clients < 1 or args.repeat < 1:
        p.error("--transfers, --batch, --clients and --repeat must be positive")
    if args.profile and args.clients != 1:
        p.error("--profile needs --clients 1")
    return args


def summarise(
    args: argparse.Namespace,
    backend: str,
    settings: dict[str, Any],
    runs: list[Run],
    pgbench: PgBench | None,
) -> dict[str, Any]:
    rate = statistics.median(r.transfers_per_s for r in runs)
    out: dict[str, Any] = {
        "backend": backend,
        "transfers": args.transfers,
        "seconds": round(statistics.median(r.seconds for r in runs), 4),
        "transfers_per_s": round(rate, 1),
        "transfers_per_cpu_s": round(statistics.median(r.transfers_per_cpu_s for r in runs), 1),
        "verified": all(r.verified for r in runs),
        "batch": args.batch,
        "clients": args.clients,
        "repeat": args.repeat,
        "runs": [r.as_dict() for r in runs],
        "durability": settings,
    }
    if backend == "sqlite":
        out["target_transfers_per_s"] = SQLITE_TARGET_TPS
        out["meets_target"] = rate >= SQLITE_TARGET_TPS
    elif pgbench is not None and pgbench.runs:
        tps = statistics.median(pgbench.runs)
        a = args
        out["pgbench_tps"] = round(tps, 1)
        out["ratio"] = round(rate / tps, 3)
        out["pgbench_runs"] = [round(t, 1) for t in pgbench.runs]
        out["pgbench"] = {
            "scale": a.pgbench_scale,
            "clients": a.pgbench_clients,
            "jobs": a.pgbench_jobs,
            "seconds": a.pgbench_seconds,
        }
        out["target_ratio"] = PG_TARGET_RATIO
        out["meets_target"] = rate / tps >= PG_TARGET_RATIO
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # A plain kill still runs the finally blocks that drop the scratch databases.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    code = code_version()
    env_url = os.environ.get("CARBONHUB_DATABASE_URL", "")
    on_pg = env_url.startswith("postgres")
    admin = (
        sa.create_engine(pg_url(env_url, "postgres"), isolation_level="AUTOCOMMIT")
        if on_pg
        else None
    )
    base_url = env_url if on_pg else None
    runs: list[Run] = []
    settings: dict[str, Any] = {}
    pgbench: PgBench | None = None
    try:
        with pgbench_reference(args, env_url, admin) as pgbench:
            for i in range(args.repeat):
                with fresh_database(base_url, admin) as db:
                    runs.append(one_run(args, db, i))
                    settings = settings or durability_settings(db)
                if pgbench is not None:
                    pgbench.run()
    finally:
        if admin is not None:
            admin.dispose()
    result = summarise(args, "postgresql" if on_pg else "sqlite", settings, runs, pgbench)
    if code_version()["sources_sha256"] != code["sources_sha256"]:
        code["changed_during_run"] = True
    result["code"] = code
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        print(
            f"{result['backend']}: {result['transfers_per_s']:,.0f} transfers/s median "
            f"(batch {args.batch}, clients {args.clients}; runs "
            f"{', '.join(f'{r.transfers_per_s:,.0f}' for r in runs)}), "
            f"verified {result['verified']}"
        )
        if "ratio" in result:
            print(f"pgbench {result['pgbench_tps']:,.0f} tps; ratio {result['ratio']:.3f}")
    if not result["verified"]:
        bad = [p for r in runs for p in r.problems]
        print(f"VERIFICATION FAILED: {bad[:10]}", file=sys.stderr)
        return 1
    return 0


@contextmanager
def pgbench_reference(
    args: argparse.Namespace,
    env_url: str,
    admin: sa.Engine | None,
) -> Iterator[PgBench | None]:
    """On PostgreSQL: a scratch pgbench database, initialised once, dropped at the end."""
    if admin is None or args.skip_pgbench:
        yield None
        return
    binary = find_pgbench(args.pgbench)
    with scratch_pg_database(admin, "carbonhub_pgbench") as name:
        bench = PgBench(binary, libpq_url(env_url, name), args)
        log(f"pgbench -i -s {args.pgbench_scale} into scratch database {name}")
        bench.initialise()
        yield bench


if __name__ == "__main__":
    sys.exit(main())
