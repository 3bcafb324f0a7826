"""Crash test (DESIGN §10 invariant 7, §12): an acknowledged command survives kill -9.

A real server process serves transfers to several client threads; it is killed with SIGKILL
while requests are in flight and restarted on the same database. Every transfer that was
acknowledged (2xx) must be there, a retry with the same Idempotency-Key must return the same
transfer and create nothing, and `carbonhub verify` must pass.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from carbonhub.registry import store
from tests.conftest import World

pytestmark = pytest.mark.slow

SERVER = """
import sys
import uvicorn
from carbonhub.api import create_app
from carbonhub.core.db import Database
app = create_app(Database(), console=False, duties_every_s=0)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""

CLIENT_THREADS = 6
LOAD_MIN_ACKS = 60
LOAD_MAX_S = 8.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, url: str, log: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        env = dict(os.environ, CARBONHUB_DATABASE_URL=url)
        env.pop("CARBONHUB_CHECK_INVARIANTS", None)
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", SERVER, str(self.port)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"server exited with {self.proc.returncode}: {self.log.read_text()}")
            try:
                r = httpx.get(f"{self.base}/api/v1/health", timeout=2)
                if r.status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        pytest.fail(f"server not healthy after {timeout} s: {self.log.read_text()}")

    def kill9(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


@pytest.fixture
def servers(db_url: str, tmp_path: Path) -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for s in started:
        s.kill9()


def start(servers: list[Server], url: str, tmp_path: Path) -> Server:
    s = Server(url, tmp_path / f"server-{len(servers)}.log")
    servers.append(s)
    s.wait_healthy()
    return s


@dataclass
class Sent:
    key: str
    user: str
    body: dict[str, Any]


@dataclass
class Load:
    acked: list[tuple[Sent, dict[str, Any]]] = field(default_factory=list)
    unknown: list[Sent] = field(default_factory=list)  # no answer: in flight or refused
    in_flight: int = 0  # the connection broke after the request went out
    rejected: list[tuple[Sent, int, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def client(
    n: int, base: str, tokens: dict[str, str], accounts: dict[str, str], load: Load, stop: Any
) -> None:
    user = "alice" if n % 2 == 0 else "bob"
    other = "bob" if user == "alice" else "alice"
    rng = random.Random(n)
    headers = {"Authorization": f"Bearer {tokens[user]}"}
    with httpx.Client(base_url=base, headers=headers, timeout=30) as http:
        i = 0
        while not stop.is_set():
            i += 1
            sent = Sent(
                key=f"crash-{n}-{i}-{uuid.uuid4().hex[:12]}",
                user=user,
                body={
                    "from_account": accounts[user],
                    "to_account": accounts[other],
                    "unit_class": "CEA-2023",
                    "quantity": rng.randint(1, 9),
                    "reason": f"crash test {n}/{i}",
                },
            )
            try:
                r = http.post(
                    "/api/v1/registry/transfers",
                    json=sent.body,
                    headers={"Idempotency-Key": sent.key},
                )
            except httpx.ConnectError:
                with load.lock:
                    load.unknown.append(sent)
                return
            except httpx.TransportError:
                with load.lock:
                    load.unknown.append(sent)
                    load.in_flight += 1
                return
            with load.lock:
                if 200 <= r.status_code < 300:
                    load.acked.append((sent, r.json()))
                else:
                    load.rejected.append((sent, r.status_code, r.text))


def posted(db_url: str, account: str) -> int:
    engine = sa.create_engine(_sa_url(db_url))
    try:
        with engine.connect() as c:
            return int(
                c.execute(
                    sa.select(store.holdings.c.posted).where(
                        store.holdings.c.account_id == account,
                        store.holdings.c.unit_class == "CEA-2023",
                    )
                ).scalar_one()
            )
    finally:
        engine.dispose()


def _sa_url(url: str) -> str:
    from carbonhub.core.db import normalise_url

    return normalise_url(url)


def test_acknowledged_transfers_survive_kill_9(
    world: World, db_url: str, tmp_path: Path, servers: list[Server]
) -> None:
    world.issue_and_allocate(world.b, 500_000)
    start_a, start_b = posted(db_url, world.a), posted(db_url, world.b)
    assert (start_a, start_b) == (500_000, 500_000)
    accounts = {"alice": world.a, "bob": world.b}

    first = start(servers, db_url, tmp_path)
    tokens = {}
    for user in accounts:
        r = httpx.post(
            f"{first.base}/api/v1/auth/token",
            json={"username": user, "password": f"password-{user}"},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        tokens[user] = r.json()["token"]

    load, stop = Load(), threading.Event()
    threads = [
        threading.Thread(target=client, args=(n, first.base, tokens, accounts, load, stop))
        for n in range(CLIENT_THREADS)
    ]
    for t in threads:
        t.start()
    t0 = time.monotonic()
    while time.monotonic() - t0 < LOAD_MAX_S:
        with load.lock:
            if len(load.acked) >= LOAD_MIN_ACKS:
                break
        time.sleep(0.02)
    first.kill9()  # SIGKILL while the clients keep sending
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)

    print(f"acked {len(load.acked)} unknown {len(load.unknown)} in flight {load.in_flight}")
    assert not load.rejected, load.rejected[:3]
    assert len(load.acked) >= 10, "too little load before the kill"
    assert load.in_flight >= 1, "no request was in flight when the server died"

    second = start(servers, db_url, tmp_path)
    with httpx.Client(base_url=second.base, timeout=30) as http:

        def as_user(user: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {tokens[user]}"}

        ids: dict[str, str] = {}  # key → transfer id
        for sent, answer in load.acked:
            got = http.get(f"/api/v1/registry/transfers/{answer['id']}", headers=as_user(sent.user))
            assert got.status_code == 200, got.text
            t = got.json()
            assert t["status"] == "COMPLETED", t
            assert t["quantity"] == sent.body["quantity"]
            assert (t["from_account"], t["to_account"]) == (
                sent.body["from_account"],
                sent.body["to_account"],
            )
            again = http.post(
                "/api/v1/registry/transfers",
                json=sent.body,
                headers=as_user(sent.user) | {"Idempotency-Key": sent.key},
            )
            assert 200 <= again.status_code < 300, again.text
            assert again.json()["id"] == answer["id"], "a retry created a second transfer"
            ids[sent.key] = answer["id"]

        # requests that never got an answer: the client retries; each happens at most once
        for sent in load.unknown:
            for _ in range(2):
                r = http.post(
                    "/api/v1/registry/transfers",
                    json=sent.body,
                    headers=as_user(sent.user) | {"Idempotency-Key": sent.key},
                )
                assert 200 <= r.status_code < 300, r.text
                assert ids.setdefault(sent.key, r.json()["id"]) == r.json()["id"]

        assert len(set(ids.values())) == len(ids)

        # the same key with other input is refused, and changes nothing
        sent, _ = load.acked[0]
        changed = dict(sent.body, quantity=sent.body["quantity"] + 1)
        r = http.post(
            "/api/v1/registry/transfers",
            json=changed,
            headers=as_user(sent.user) | {"Idempotency-Key": sent.key},
        )
        assert r.status_code == 409 and r.json()["code"] == "IDEMPOTENCY_KEY_REUSED", r.text

    # nothing done twice: exactly one transfer per key, and the balances add up
    engine = sa.create_engine(_sa_url(db_url))
    try:
        with engine.connect() as c:
            rows = c.execute(
                sa.select(store.transfers.c.id, store.transfers.c.status).where(
                    store.transfers.c.op == "TRANSFER"
                )
            ).all()
    finally:
        engine.dispose()
    assert {r.id for r in rows} == set(ids.values())
    assert {r.status for r in rows} == {"COMPLETED"}
    everything = [s for s, _ in load.acked] + load.unknown
    net = sum(s.body["quantity"] * (1 if s.user == "bob" else -1) for s in everything)
    assert posted(db_url, world.a) == start_a + net
    assert posted(db_url, world.b) == start_b - net

    second.kill9()
    env = dict(os.environ, CARBONHUB_DATABASE_URL=db_url, NO_COLOR="1")
    v = subprocess.run(
        [str(Path(sys.executable).with_name("carbonhub")), "verify"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert v.returncode == 0, v.stdout + v.stderr
    assert v.stdout.startswith("ok:")
