"""Order entry through the HTTP API at a steady rate: latency from each order's scheduled send.

    python bench/order_entry.py --json
    python bench/order_entry.py --seconds 5 --json
    python bench/order_entry.py --neighbour 0.9 --json   # on a busy machine, see below
    CARBONHUB_DATABASE_URL=postgresql:///postgres python bench/order_entry.py --json

Set-up (not timed): a fresh database (SQLite: a temporary file, WAL with synchronous=FULL as the
engine sets it; PostgreSQL when CARBONHUB_DATABASE_URL is set: a new database on that server,
dropped afterwards; existing databases are never touched), migrated and bootstrapped; two
operators, a settlement bank, ~50 enterprise members each with an open holding account holding
units, a funded cash account, a bearer token (AuthService.issue_token), and HBEA2023 listed under
the "hubei" preset (continuous trading, middle price rule, reference price 80.00), all through
the services. Every service runs on a fixed clock: Monday 2026-11-23 10:00 Asia/Shanghai, inside
the morning session.

The server is a real uvicorn process (this script with --serve: create_app(db, console=False) on
the same fixed clock, run as `carbonhub serve` runs it, through carbonhub.api.run_server; its
lifespan starts the exchange's group-commit writer) on 127.0.0.1 and a free port; the bench
waits for /api/v1/health.

Load (open loop, no coordinated omission): order i is due at t0 + i / rate; a dispatcher queues
it at that time whatever happened to the earlier ones, and --clients senders, each on its own
keep-alive connection, send what is queued. An order's latency runs from its *scheduled* send to
the end of the response, so a slow server (all connections busy, orders waiting in the queue)
counts against the latencies instead of slowing the offered rate. The dispatcher's own lateness
(queued minus scheduled) is the generator's lag, reported apart with the generator's CPU time:
when it is large the figures describe the generator, not the server. --http picks the client:
raw (default: asyncio on uvloop, each request's HTTP/1.1 bytes written as they are and the
response read by httptools' parser, the one uvicorn uses), aiohttp (one ClientSession),
httpx-async (one httpx.AsyncClient) or httpx-threads (one httpx.Client per sender thread). The
generator shares the machine with the server, so its CPU is taken from the server's: at 1,000
orders/s for 30 s raw spent 0.15 of a core, aiohttp 0.33 (and httpx far more: closed loop
against /api/v1/health, httpx.AsyncClient 1.6-2.9 ms of CPU per request, httpx.Client 0.6-1.0,
aiohttp 0.2-0.3; httpx-threads lagged p99 184 ms at 1,000/s from GIL contention among its
threads). The generator's CPU seconds and the server's are both reported.

The order mix: continuous-mode LIMIT orders for HBEA2023; the first half of the members only
buy and the other half only sell (so self-trade prevention never fires); buys at 79.40–80.40 and
sells at 79.60–80.60 yuan (uniform on the 0.01 tick), 1–100 t; about a third of the orders
cross on arrival (takers), about 60 % end with a fill (as taker or maker), the rest rest. Every
request has its own Idempotency-Key and its member's bearer token. A warm-up of --warmup orders
at a gentle pace precedes the timed phase (not counted in the figures; counted in the database
totals).

--neighbour SHARE starts, for the timed phase only, two processes beside the server: one busy
SHARE of every 10 ms on a core, one writing 256 KB and fsyncing it in a loop on the database's
file system; their CPU seconds are reported (neighbour_cpu_s). It measures the latencies on a
busy machine on purpose, instead of on whatever the machine's other users happen to be doing.

After the run the server is stopped, carbonhub.verify.verify(db) runs and the orders and trades
in the database are counted; every non-2xx response is counted by status (and a few bodies
kept): there should be none. A failed check, a non-2xx answer or stored orders that do not match
the accepted ones are listed under "problems" and exit 1.

stdout gets one JSON object with --json (a short text summary otherwise); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import queue
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httptools
import sqlalchemy as sa
from benchlib import (
    HUBEI_INSTRUMENT,
    HUBEI_REFERENCE_FEN,
    Clock,
    bench_settings,
    code_version,
    durability_settings,
    fresh_database,
    machine,
    setup_hubei_market,
)

from carbonhub.core.auth import Actor
from carbonhub.core.db import Database

INSTRUMENT = HUBEI_INSTRUMENT
REFERENCE_FEN = HUBEI_REFERENCE_FEN
TRADING_AT = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # Monday 10:00 Asia/Shanghai
ORDERS_PATH = "/api/v1/exchange/orders"
TARGET_P99_MS = 20.0
RATE_TOLERANCE = 0.99  # the achieved rate must be at least this share of the scheduled one


def log(message: str) -> None:
    print(f"[order_entry] {message}", file=sys.stderr, flush=True)


@dataclass
class Member:
    actor: Actor
    token: str
    side: str  # B or S: what this member sends


def setup_market(db: Database, members: int, tag: str) -> list[Member]:
    """benchlib's Hubei market; a bearer token per member; the first half buy, the rest sell."""
    market = setup_hubei_market(
        db, members, units_each=10_000_000, cash_each="1000000000.00", tag=tag, at=TRADING_AT
    )
    half = members // 2
    return [
        Member(actor, market.auth.issue_token(actor)["token"], "B" if i < half else "S")
        for i, actor in enumerate(market.members)
    ]


@dataclass(frozen=True)
class Request:
    body: bytes
    headers: dict[str, str]


def plan(members: Sequence[Member], n: int, seed: int, tag: str, first: int) -> list[Request]:
    """`n` continuous LIMIT orders (see the module docstring for the mix)."""
    rng = random.Random(seed)
    buyers = [m for m in members if m.side == "B"]
    sellers = [m for m in members if m.side == "S"]
    out = []
    for i in range(first, first + n):
        buy = rng.random() < 0.5
        member = rng.choice(buyers if buy else sellers)
        offset = rng.randint(-60, 40)  # buys at ref −0.60..+0.40, sells at ref −0.40..+0.60
        fen = REFERENCE_FEN + offset if buy else REFERENCE_FEN - offset
        body = {
            "instrument": INSTRUMENT,
            "mode": "CONTINUOUS",
            "side": "B" if buy else "S",
            "price": f"{fen // 100}.{fen % 100:02d}",
            "quantity": rng.randint(1, 100),
            "tif": "LIMIT",
        }
        out.append(
            Request(
                json.dumps(body).encode(),
                {
                    "Authorization": f"Bearer {member.token}",
                    "Idempotency-Key": f"bench-oe-{tag}-{i:08d}",
                    "Content-Type": "application/json",
                },
            )
        )
    return out


# ------------------------------------------------------------------ the server


def serve(url: str, port: int, clock: str) -> None:
    """The server process: the app on a fixed clock, uvicorn on 127.0.0.1:port."""
    from carbonhub.api import create_app, run_server

    db = Database(bench_settings(url))
    db.clock = Clock(datetime.fromisoformat(clock))
    app = create_app(db, console=False)
    run_server(app, "127.0.0.1", port, log_level="warning", access_log=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def cpu_seconds_of(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def child_pids(pid: int) -> list[int]:
    """The live children of a process (the order writer's process under the server)."""
    out: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            out += [int(c) for c in (task / "children").read_text().split()]
    except OSError:
        pass
    return out


def server_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of the server process ("web") and of each child, named by what it runs
    (the order writer is multiprocessing's spawned child beside its resource tracker)."""

    def role(child: int) -> str:
        try:
            cmd = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            return f"pid {child}"
        if b"resource_tracker" in cmd:
            return "resource tracker"
        return "writer" if b"spawn_main" in cmd else f"pid {child}"

    out = {"web": cpu_seconds_of(pid)}
    for child in child_pids(pid):
        out[role(child)] = out.get(role(child), 0.0) + cpu_seconds_of(child)
    return out


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base: str
    log_path: Path

    def log_tail(self, lines: int = 40) -> list[str]:
        try:
            return self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return []


@contextlib.contextmanager
def running_server(url: str, workdir: Path) -> Iterator[Server]:
    port = free_port()
    log_path = workdir / "server.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "--serve",
                url,
                "--port",
                str(port),
                "--clock",
                TRADING_AT.isoformat(),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            # The app reads the duties interval from the environment: keep the default (30 s).
            env={k: v for k, v in os.environ.items() if k != "CARBONHUB_DUTIES_EVERY_S"},
        )
    server = Server(proc, f"http://127.0.0.1:{port}", log_path)
    try:
        wait_healthy(server)
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # uvicorn shuts down: lifespan stops the writer
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# A neighbour on the machine, for --neighbour: one process busy `share` of every 10 ms on a
# core, another writing 256 KB and fsyncing it in a loop on the database's file system.
_BUSY = """
import sys, time
share = float(sys.argv[1])
while True:
    t = time.perf_counter()
    while time.perf_counter() - t < share * 0.01:
        pass
    time.sleep((1 - share) * 0.01)
"""
_FSYNC = """
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT)
block = os.urandom(262144)
i = 0
while True:
    os.pwrite(fd, block, (i % 64) * len(block))
    os.fsync(fd)
    i += 1
"""


@contextlib.contextmanager
def neighbour(share: float, workdir: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Load beside the server while the orders run (nothing when `share` is 0), to see how the
    latencies hold up on a busy machine."""
    procs = (
        [
            subprocess.Popen([sys.executable, "-c", _BUSY, str(share)]),
            subprocess.Popen([sys.executable, "-c", _FSYNC, str(workdir / "neighbour.dat")]),
        ]
        if share > 0
        else []
    )
    try:
        yield procs
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def wait_healthy(server: Server, timeout: float = 60.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            tail = "\n".join(server.log_tail())
            raise SystemExit(f"the server exited ({server.process.returncode}):\n{tail}")
        try:
            r = httpx.get(server.base + "/api/v1/health", timeout=1.0)
            if r.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"the server did not answer /api/v1/health within {timeout:.0f}s")


# ------------------------------------------------------------------ the load generator

GENERATORS = ("raw", "aiohttp", "httpx-async", "httpx-threads")


class _RawConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request at a time: the request's bytes written
    as they are, the response read by httptools' parser (uvicorn's, in C)."""

    def __init__(self) -> None:
        self.transport: Any = None  # uvloop's transports are not asyncio.Transport
        self.closed = False  # by either side: the next request needs a new connection
        self.parser = httptools.HttpResponseParser(self)
        self.body: list[bytes] = []
        self.waiter: asyncio.Future[tuple[str, str]] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as err:
            self.closed = True
            self._answer(type(err).__name__, repr(err))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._answer("ConnectionLost", repr(exc))

    def on_message_begin(self) -> None:
        self.body = []

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        status = self.parser.get_status_code()
        text = b"".join(self.body).decode(errors="replace") if status >= 300 else ""
        if not self.parser.should_keep_alive():
            self.closed = True
        self._answer(str(status), text)

    def _answer(self, status: str, body: str) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result((status, body))

    async def exchange(self, raw: bytes) -> tuple[str, str]:
        """The response's status and (if not 2xx) body; a failure's name and text."""
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        try:
            return await asyncio.wait_for(self.waiter, 60.0)
        except TimeoutError as err:
            self.closed = True
            return type(err).__name__, repr(err)


def _raw_request(method: str, host: str, path: str, req: Request | None) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n"
    if req is None:
        return (head + "\r\n").encode()
    fields = "".join(f"{k}: {v}\r\n" for k, v in req.headers.items())
    return f"{head}Content-Length: {len(req.body)}\r\n{fields}\r\n".encode("latin-1") + req.body


@dataclass
class Sample:
    scheduled: float  # seconds after t0
    queued: float  # the dispatcher queued it (generator lag = queued - scheduled)
    done: float
    status: str  # "201", or an exception's name


@dataclass
class LoadResult:
    samples: list[Sample]
    wall: float  # t0 to the last response
    cpu: float  # the generator's CPU seconds (this process, all threads)
    bodies: dict[str, list[str]] = field(default_factory=dict)  # a few non-2xx bodies by status


class Recorder:
    """Samples by request index, and a few bodies of what was not 2xx (any thread)."""

    def __init__(self, n: int) -> None:
        self.samples: list[Sample | None] = [None] * n
        self.bodies: dict[str, list[str]] = {}
        self._lock = threading.Lock()

    def record(self, i: int, scheduled: float, queued: float, status: str, body: str) -> None:
        self.samples[i] = Sample(scheduled, queued, time.perf_counter(), status)
        if not (status.isdigit() and 200 <= int(status) < 300):
            with self._lock:
                kept = self.bodies.setdefault(status, [])
                if len(kept) < 5:
                    kept.append(body[:500])

    def result(self, t0: float, cpu: float) -> LoadResult:
        done = [
            Sample(s.scheduled - t0, s.queued - t0, s.done - t0, s.status)
            for s in self.samples
            if s is not None
        ]
        wall = max((s.done for s in done), default=0.0)
        return LoadResult(done, wall, cpu, self.bodies)


def _drive_threads(base: str, requests: Sequence[Request], rate: float, clients: int) -> LoadResult:
    """A dispatcher thread queues order i at its scheduled time; `clients` threads, each with
    its own httpx.Client (one keep-alive connection), send what is queued."""
    import httpx

    url = base + ORDERS_PATH
    rec = Recorder(len(requests))
    work: queue.SimpleQueue[tuple[int, float, float] | None] = queue.SimpleQueue()
    ready = threading.Barrier(clients + 1, timeout=60.0)

    def worker() -> None:
        with httpx.Client(timeout=60.0) as client:
            client.get(base + "/api/v1/health")  # connect before the clock starts
            ready.wait()
            while (item := work.get()) is not None:
                i, scheduled, queued = item
                req = requests[i]
                try:
                    r = client.post(url, content=req.body, headers=req.headers)
                    status, body = str(r.status_code), r.text if r.status_code >= 300 else ""
                except httpx.HTTPError as err:
                    status, body = type(err).__name__, repr(err)
                rec.record(i, scheduled, queued, status, body)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    ready.wait()
    c0 = time.process_time()
    t0 = time.perf_counter() + 0.05
    interval = 1.0 / rate
    for i in range(len(requests)):
        at = t0 + i * interval
        now = time.perf_counter()
        if at > now:
            time.sleep(at - now)
            now = time.perf_counter()
        work.put((i, at, now))
    for _ in threads:
        work.put(None)
    for t in threads:
        t.join()
    return rec.result(t0, time.process_time() - c0)


async def _drive_async(
    base: str, requests: Sequence[Request], rate: float, clients: int, http: str
) -> LoadResult:
    """A dispatcher coroutine queues order i at its scheduled time; `clients` worker coroutines
    share one client with up to `clients` keep-alive connections."""
    url = base + ORDERS_PATH
    rec = Recorder(len(requests))
    work: asyncio.Queue[tuple[int, float, float] | None] = asyncio.Queue()
    async with contextlib.AsyncExitStack() as stack:
        if http == "raw":
            loop = asyncio.get_running_loop()
            host = base.split("://", 1)[1]
            hostname, port = host.rsplit(":", 1)
            idle: asyncio.Queue[_RawConnection] = asyncio.Queue()

            async def connect() -> _RawConnection:
                transport, conn = await loop.create_connection(_RawConnection, hostname, int(port))
                stack.callback(transport.close)
                return conn

            for _ in range(clients):
                idle.put_nowait(await connect())

            async def send(raw: bytes) -> tuple[str, str]:
                """On an idle connection, a new one if that one was closed; a connection that
                fails goes back closed, so the next request opens a new one."""
                conn = await idle.get()
                try:
                    if conn.closed:
                        conn.transport.close()
                        conn = await connect()
                    return await conn.exchange(raw)
                except OSError as err:
                    conn.closed = True
                    return type(err).__name__, repr(err)
                finally:
                    idle.put_nowait(conn)

            async def get(u: str) -> None:
                await send(_raw_request("GET", host, u.removeprefix(base), None))

            async def post(req: Request) -> tuple[str, str]:
                return await send(_raw_request("POST", host, ORDERS_PATH, req))

        elif http == "aiohttp":
            import aiohttp

            session = await stack.enter_async_context(
                aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=clients),
                    timeout=aiohttp.ClientTimeout(total=60.0),
                )
            )

            async def get(u: str) -> None:
                async with session.get(u) as r:
                    await r.read()

            async def post(req: Request) -> tuple[str, str]:
                try:
                    async with session.post(url, data=req.body, headers=req.headers) as r:
                        text = await r.text()
                        return str(r.status), text if r.status >= 300 else ""
                except (aiohttp.ClientError, TimeoutError) as err:
                    return type(err).__name__, repr(err)

        else:
            import httpx

            limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
            client = await stack.enter_async_context(
                httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(60.0))
            )

            async def get(u: str) -> None:
                await client.get(u)

            async def post(req: Request) -> tuple[str, str]:
                try:
                    r = await client.post(url, content=req.body, headers=req.headers)
                    return str(r.status_code), r.text if r.status_code >= 300 else ""
                except httpx.HTTPError as err:
                    return type(err).__name__, repr(err)

        # open the connections before the clock starts
        await asyncio.gather(*(get(base + "/api/v1/health") for _ in range(clients)))

        async def worker() -> None:
            while (item := await work.get()) is not None:
                i, scheduled, queued = item
                status, body = await post(requests[i])
                rec.record(i, scheduled, queued, status, body)

        workers = [asyncio.create_task(worker()) for _ in range(clients)]
        c0 = time.process_time()
        t0 = time.perf_counter() + 0.05
        interval = 1.0 / rate
        for i in range(len(requests)):
            at = t0 + i * interval
            now = time.perf_counter()
            if at > now:
                await asyncio.sleep(at - now)
                now = time.perf_counter()
            work.put_nowait((i, at, now))
        for _ in workers:
            work.put_nowait(None)
        await asyncio.gather(*workers)
        cpu = time.process_time() - c0
    return rec.result(t0, cpu)


def drive(
    base: str, requests: Sequence[Request], rate: float, clients: int, http: str
) -> LoadResult:
    """Open loop: order i is due at t0 + i / rate; its latency runs from then (see the module
    docstring). Waiting for a free connection is part of the latency, not of the lag."""
    if http == "httpx-threads":
        return _drive_threads(base, requests, rate, clients)
    coro = _drive_async(base, requests, rate, clients, http)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def event_loop_name() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


# ------------------------------------------------------------------ figures


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest rank: the smallest value with at least q of the values at or below it."""
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def distribution_ms(values: Sequence[float]) -> dict[str, float]:
    v = sorted(values)
    return {
        "p50": round(percentile(v, 0.50) * 1000, 3),
        "p90": round(percentile(v, 0.90) * 1000, 3),
        "p99": round(percentile(v, 0.99) * 1000, 3),
        "p99_9": round(percentile(v, 0.999) * 1000, 3),
        "max": round(v[-1] * 1000, 3) if v else float("nan"),
        "mean": round(statistics.fmean(v) * 1000, 3) if v else float("nan"),
    }


def db_counts(db: Database) -> dict[str, Any]:
    from carbonhub.exchange import store as s

    with db.engine.connect() as c:
        by_status = {
            str(r[0]): int(r[1])
            for r in c.execute(
                sa.select(s.orders.c.status, sa.func.count()).group_by(s.orders.c.status)
            )
        }
        trades, volume = c.execute(
            sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(s.trades.c.quantity), 0))
        ).one()
        crossed = c.execute(
            sa.select(sa.func.count()).select_from(s.orders).where(s.orders.c.filled > 0)
        ).scalar_one()
        t = s.trades.c
        takers = c.execute(
            sa.select(
                sa.func.count(
                    sa.distinct(sa.case((t.taker_side == "B", t.buy_order), else_=t.sell_order))
                )
            )
        ).scalar_one()
        stp = c.execute(
            sa.select(sa.func.count())
            .select_from(s.orders)
            .where(s.orders.c.reason == "SELF_TRADE")
        ).scalar_one()
    return {
        "orders": sum(by_status.values()),
        "orders_by_status": by_status,
        "orders_with_fills": int(crossed),
        "orders_crossing_on_arrival": int(takers),
        "orders_self_trade_cancelled": int(stp),
        "trades": int(trades),
        "traded_tonnes": int(volume),
    }


@dataclass
class Run:
    figures: dict[str, Any]
    problems: list[str]


def one_run(args: argparse.Namespace, base_url: str | None, index: int) -> Run:
    from carbonhub.verify import verify

    tag = f"r{index}-{uuid.uuid4().hex[:6]}"
    problems: list[str] = []
    with fresh_database(base_url) as db, tempfile.TemporaryDirectory() as tmp:
        t_setup = time.perf_counter()
        members = setup_market(db, args.members, tag)
        n = round(args.rate * args.seconds)
        warm = plan(members, args.warmup, args.seed + 1000 * index + 1, tag, 0)
        timed = plan(members, n, args.seed + 1000 * index, tag, args.warmup)
        durability = durability_settings(db)
        url = db.engine.url.render_as_string(hide_password=False)
        db.dispose()  # the server process owns the database while it runs
        log(
            f"run {index + 1}: setup {time.perf_counter() - t_setup:.1f}s ({args.members} "
            f"members); server on {db.backend}"
        )
        with running_server(url, Path(tmp)) as server:
            warm_result = (
                drive(server.base, warm, args.warmup_rate, args.clients, args.http)
                if warm
                else None
            )
            log(f"run {index + 1}: {n} orders at {args.rate:g}/s for {args.seconds:g}s")
            with neighbour(args.neighbour, Path(tmp)) as others:
                cpu0 = server_cpu(server.process.pid)
                load0 = os.getloadavg()[0]
                result = drive(server.base, timed, args.rate, args.clients, args.http)
                cpu1 = server_cpu(server.process.pid)
                load1 = os.getloadavg()[0]
                neighbour_cpu = sum(cpu_seconds_of(proc.pid) for proc in others)
            server_alive = server.process.poll() is None
        server_log = [ln for ln in server.log_tail(60) if ln.strip()]
        t_verify = time.perf_counter()
        report = verify(db)
        verify_s = time.perf_counter() - t_verify
        problems.extend(report.problems)
        counts = db_counts(db)
    samples = result.samples
    statuses = Counter(s.status for s in samples)
    ok = sum(v for k, v in statuses.items() if k.isdigit() and 200 <= int(k) < 300)
    non_2xx = {k: v for k, v in statuses.items() if not (k.isdigit() and 200 <= int(k) < 300)}
    warm_statuses = Counter(s.status for s in warm_result.samples) if warm_result else Counter()
    warm_ok = sum(v for k, v in warm_statuses.items() if k.isdigit() and 200 <= int(k) < 300)
    if non_2xx:
        problems.append(f"non-2xx responses: {non_2xx}")
    if warm_ok != args.warmup:
        problems.append(f"warm-up: {dict(warm_statuses)}")
    if counts["orders"] != ok + warm_ok:
        problems.append(f"{counts['orders']} orders stored, {ok + warm_ok} accepted (2xx)")
    if not server_alive:
        problems.append("the server process died during the run")
    server_seconds = sum(cpu1[p] - cpu0.get(p, 0.0) for p in cpu1)
    latencies = [s.done - s.scheduled for s in samples]
    in_flight = [s.done - s.queued for s in samples]
    lags = [s.queued - s.scheduled for s in samples]
    last_done = max((s.done for s in samples), default=float("nan"))
    last_start = max((s.queued for s in samples), default=float("nan"))
    lat = distribution_ms(latencies)
    achieved = ok / last_done if last_done > 0 else 0.0
    figures: dict[str, Any] = {
        "orders_sent": len(samples),
        "orders_2xx": ok,
        "non_2xx": non_2xx,
        "latency_ms": lat,
        "queued_to_done_ms": distribution_ms(in_flight),
        "generator_lag_ms": distribution_ms(lags),
        "achieved_orders_per_s": round(achieved, 1),
        "sent_orders_per_s": round(len(samples) / last_start, 1) if last_start > 0 else 0.0,
        "seconds_to_last_response": round(last_done, 3),
        "generator_cpu_s": round(result.cpu, 2),
        "server_cpu_s": round(server_seconds, 2),
        "server_cpu_ms_per_order": round(server_seconds / max(1, len(samples)) * 1000, 2),
        "server_cpu_ms_per_order_by_process": {
            p: round((cpu1[p] - cpu0.get(p, 0.0)) / max(1, len(samples)) * 1000, 3) for p in cpu1
        },
        "load_avg_1m": [round(load0, 2), round(load1, 2)],
        "neighbour_cpu_s": round(neighbour_cpu, 2),
        "warmup": {"orders": args.warmup, "statuses": dict(warm_statuses)},
        "database": counts,
        "taker_share": round(counts["orders_crossing_on_arrival"] / max(1, counts["orders"]), 3),
        "filled_share": round(counts["orders_with_fills"] / max(1, counts["orders"]), 3),
        "verified": report.ok,
        "verify": {"entries": report.entries, "seconds": round(verify_s, 1)},
        "durability": durability,
    }
    if result.bodies:
        figures["non_2xx_bodies"] = result.bodies
    if server_log:
        figures["server_log_tail"] = server_log[-20:]
    log(
        f"run {index + 1}: p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms, p99.9 "
        f"{lat['p99_9']:.1f} ms, max {lat['max']:.1f} ms; {achieved:,.0f} orders/s achieved; "
        f"non-2xx {non_2xx or 0}; lag p99 {figures['generator_lag_ms']['p99']:.1f} ms; "
        f"verify {'ok' if report.ok else report.problems[:3]}; {counts['orders']} orders, "
        f"{counts['trades']} trades in the database"
    )
    return Run(figures, problems)


# ------------------------------------------------------------------ main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--rate", type=float, default=1000.0, help="orders per second, scheduled")
    p.add_argument("--seconds", type=float, default=30.0, help="length of the timed phase")
    p.add_argument("--clients", type=int, default=32, help="keep-alive connections (senders)")
    p.add_argument(
        "--http",
        choices=GENERATORS,
        default="raw",
        help="the load generator's HTTP client (see the module docstring)",
    )
    p.add_argument("--members", type=int, default=50, help="members sending orders (≥ 2)")
    p.add_argument("--warmup", type=int, default=200, help="orders before the timed phase")
    p.add_argument("--warmup-rate", type=float, default=200.0, help="their rate, per second")
    p.add_argument("--repeat", type=int, default=1, help="runs (fresh database and server each)")
    p.add_argument("--seed", type=int, default=20261123)
    p.add_argument(
        "--neighbour",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="while the orders run, keep SHARE (0–1) of a core busy and fsync in a loop",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    # the server process (internal): python bench/order_entry.py --serve URL --port N --clock T
    p.add_argument("--serve", metavar="URL", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--clock", default=TRADING_AT.isoformat(), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        return args
    if args.rate <= 0 or args.seconds <= 0 or args.clients < 1 or args.repeat < 1:
        p.error("--rate, --seconds, --clients and --repeat must be positive")
    if not 0 <= args.neighbour < 1:
        p.error("--neighbour is a share of a core, 0 ≤ SHARE < 1")
    if args.members < 2 or args.warmup < 0 or args.warmup_rate <= 0:
        p.error("--members ≥ 2, --warmup ≥ 0 and --warmup-rate > 0")
    return args


def summarise(args: argparse.Namespace, backend: str, runs: list[Run]) -> dict[str, Any]:
    figs = [r.figures for r in runs]

    def med(path: tuple[str, ...]) -> float:
        values = []
        for f in figs:
            v: Any = f
            for k in path:
                v = v[k]
            values.append(float(v))
        return round(statistics.median(values), 3)

    latency = {q: med(("latency_ms", q)) for q in ("p50", "p90", "p99", "p99_9", "max")}
    achieved = med(("achieved_orders_per_s",))
    non_2xx = sum(sum(f["non_2xx"].values()) for f in figs)
    verified = all(f["verified"] for f in figs)
    return {
        "benchmark": "order_entry",
        "backend": backend,
        "parameters": {
            "rate": args.rate,
            "seconds": args.seconds,
            "clients": args.clients,
            "members": args.members,
            "warmup": args.warmup,
            "repeat": args.repeat,
            "seed": args.seed,
            "instrument": f"{INSTRUMENT} (hubei preset, CONTINUOUS, LIMIT)",
            "server": "uvicorn, 1 process, 127.0.0.1, httptools/uvloop when installed",
            "generator": args.http
            + ("" if args.http == "httpx-threads" else f" on {event_loop_name()}")
            + f", open loop, {args.clients} keep-alive connections",
            "neighbour": {
                "cpu_share": args.neighbour,
                "disk": "256 KB written and fsynced in a loop" if args.neighbour else None,
            },
        },
        "latency_ms": latency,
        "achieved_orders_per_s": achieved,
        "generator_lag_ms_p99": med(("generator_lag_ms", "p99")),
        "non_2xx": non_2xx,
        "verified": verified,
        "orders_in_db": [f["database"]["orders"] for f in figs],
        "trades_in_db": [f["database"]["trades"] for f in figs],
        "target": {
            "p99_ms_below": TARGET_P99_MS,
            "rate_at_least": round(args.rate * RATE_TOLERANCE, 1),
            "non_2xx": 0,
        },
        "meets_target": latency["p99"] < TARGET_P99_MS
        and achieved >= args.rate * RATE_TOLERANCE
        and non_2xx == 0
        and verified,
        "runs": figs,
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve:
        serve(args.serve, args.port, args.clock)
        return 0
    # A plain kill still runs the finally blocks that stop the server and drop the database.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    host = machine()
    code = code_version()
    env_url = os.environ.get("CARBONHUB_DATABASE_URL", "")
    base_url = env_url if env_url.startswith("postgres") else None
    runs = [one_run(args, base_url, i) for i in range(args.repeat)]
    result = {"machine": host, **summarise(args, "postgresql" if base_url else "sqlite", runs)}
    if code_version()["sources_sha256"] != code["sources_sha256"]:
        code["changed_during_run"] = True
    result["code"] = code
    problems = [p for r in runs for p in r.problems]
    if problems:
        result["problems"] = problems[:20]
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        lat = result["latency_ms"]
        print(
            f"{result['backend']}: p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms, p99.9 "
            f"{lat['p99_9']:.1f} ms, max {lat['max']:.1f} ms at {args.rate:g} orders/s "
            f"scheduled, {result['achieved_orders_per_s']:,.0f} achieved; non-2xx "
            f"{result['non_2xx']}; verified {result['verified']}; meets target "
            f"{result['meets_target']}"
        )
    if problems:  # a failed verify, a non-2xx answer, a count that does not add up
        print(f"PROBLEMS: {problems[:10]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
