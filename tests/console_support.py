"""Console test support: seed a small market through the services, and serve the console.

`python -m tests.console_support URL PORT` serves a bare FastAPI app with the console mounted on
the database at URL (and one /api/v1 route added *after* mounting, to prove the console does not
shadow the API). The test process seeds the database first, then starts this as a subprocess.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from carbonhub.core import migrate
from carbonhub.core.auth import Actor, AuthService, Role
from carbonhub.core.db import Database
from carbonhub.core.settings import Settings
from carbonhub.registry.service import RegistryService

ROOT = Path(__file__).resolve().parent.parent
PASSWORDS = {name: f"password-{name}" for name in ("op1", "op2", "alice", "bob", "vera")}


@dataclass(frozen=True)
class Seeded:
    url: str
    a: str  # alice's holding account (华能武汉), 500,000 t CEA-2023
    b: str  # bob's holding account (武钢), empty
    entity_a: str
    entity_b: str
    bank: str  # a bank entity, to be named as lien holder
    serial_a: str  # the block serial alice holds
    actors: dict[str, Actor] = field(default_factory=dict)  # op1, op2, alice, bob, vera


def key() -> str:
    return f"seed-{uuid.uuid4().hex}"


def prepare(url: str) -> None:
    """Schema and the registry's system accounts: enough for the server to start on."""
    db = Database(Settings(database_url=url))
    try:
        migrate.upgrade(db)
        RegistryService(db).bootstrap()
    finally:
        db.dispose()


def seed(url: str) -> Seeded:
    """The same small market as tests.conftest's `world`, plus a bank entity (after `prepare`)."""
    db = Database(Settings(database_url=url))
    try:
        auth, reg = AuthService(db), RegistryService(db)
        ea = auth.create_entity(
            "华能武汉发电有限公司", "enterprise", "91420100MA4KX0001A", sector="power"
        )
        eb = auth.create_entity(
            "武汉钢铁有限公司", "enterprise", "91420100MA4KX0002B", sector="steel"
        )
        bank = auth.create_entity("汉口银行股份有限公司", "bank", "91420100MA4KX0003C")
        actors: dict[str, Actor] = {}
        for name, role, ent in [
            ("op1", "operator", None),
            ("op2", "operator", None),
            ("alice", "enterprise", ea["id"]),
            ("bob", "enterprise", eb["id"]),
            ("vera", "verifier", None),
        ]:
            u = auth.create_user(name, PASSWORDS[name], role, ent)
            actors[name] = Actor(u["id"], u["username"], Role(u["role"]), u["entity_id"])
        op1, op2, alice, bob = (actors[n] for n in ("op1", "op2", "alice", "bob"))
        a = reg.request_account(alice, key(), type="HOLDING", name="华能武汉 持有账户")["id"]
        b = reg.request_account(bob, key(), type="HOLDING", name="武钢 持有账户")["id"]
        reg.decide_account(op1, key(), a, approve=True)
        reg.decide_account(op1, key(), b, approve=True)
        t = reg.issue(op1, key(), unit_class="CEA-2023", quantity=1_000_000)
        reg.approve(op2, key(), t["id"])
        al = reg.allocate(op1, key(), to_account=a, unit_class="CEA-2023", quantity=500_000)
        reg.approve(op2, key(), al["id"])
        serial_a = reg.blocks(alice, a)[0]["serial"]
        return Seeded(url, a, b, ea["id"], eb["id"], bank["id"], serial_a, actors)
    finally:
        db.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    url: str, port: int, workdir: Path, module: str = "tests.console_support", *args: str
) -> subprocess.Popen[bytes]:
    """`python -m module url port *args` on the console's database, its output in server.log."""
    env = dict(os.environ)
    env.update(
        CARBONHUB_DATABASE_URL=url,
        CARBONHUB_CONSOLE_SECRET="console-test-secret",
        NICEGUI_STORAGE_PATH=str(workdir / "nicegui"),
        PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "src"), env.get("PYTHONPATH", "")]),
    )
    log = open(workdir / "server.log", "wb")  # noqa: SIM115 - handed to the child process
    return subprocess.Popen(
        [sys.executable, "-m", module, url, str(port), *args],
        cwd=workdir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def wait_ready(base: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"console server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{base}/api/v1/ping", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError("console server did not start")


@contextmanager
def served(
    url: str, work: Path, module: str = "tests.console_support", *args: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The console server of `module` on a free port: (base URL, process). On the way out the
    server stops, and its log must hold no traceback."""
    port = free_port()
    proc = start_server(url, port, work, module, *args)
    try:
        yield f"http://127.0.0.1:{port}", proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log = (work / "server.log").read_text(errors="replace")
        assert "Traceback" not in log, log


def serve(url: str, port: int) -> None:
    import fastapi
    import uvicorn

    from carbonhub.console import mount

    app = fastapi.FastAPI()
    db = Database(Settings(database_url=url))
    mount(app, db)

    @app.get("/api/v1/ping")
    def ping() -> dict[str, bool]:  # added after mount on purpose: it must still be reachable
        return {"ok": True}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))
