"""The `carbonhub` command line end to end (DESIGN §3 interfaces, §5 registry rules).

Most commands run in-process through Typer's CliRunner with their own environment (database URL,
token file); the ones whose process-level behaviour matters (exit codes, the one stderr line, the
console script itself, `db upgrade`, `verify`, `demo`) also run as real subprocesses.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from carbonhub.cli import app
from carbonhub.core import cli_support
from carbonhub.core.db import Database, normalise_url
from carbonhub.core.settings import Settings
from carbonhub.registry import model as m
from tests.conftest import ON_PG, PG_URL, Clock, World, _pg_admin_url

CARBONHUB = Path(sys.executable).with_name("carbonhub")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
UC = "CEA-2023"


class Cli:
    """Runs `carbonhub …` against one database, each user with their own saved token; on the
    machine's clock, as a real process, or on a test's (`clock`: orders need a session)."""

    def __init__(self, url: str, home: Path) -> None:
        self.url = url
        self.home = home
        self.runner = CliRunner()
        self.clock: Clock | None = None

    def env(self, user: str | None) -> dict[str, str]:
        return {
            "CARBONHUB_DATABASE_URL": self.url,
            "CARBONHUB_TOKEN_FILE": str(self.home / f"{user or 'nobody'}.token"),
            "NO_COLOR": "1",
            "COLUMNS": "200",
        }

    def run(self, *args: str, user: str | None = None, **env: str) -> tuple[int, str, str]:
        """In-process; a fresh Database per command, as a new process would have."""
        cli_support._db = (
            None if self.clock is None else Database(Settings(database_url=self.url), self.clock)
        )
        try:
            r = self.runner.invoke(
                app, list(args), env={**self.env(user), "CARBONHUB_TOKEN": None, **env}
            )
        finally:
            if cli_support._db is not None:
                cli_support._db.dispose()
            cli_support._db = None
        if r.exception is not None and not isinstance(r.exception, SystemExit):
            raise r.exception
        return r.exit_code, ANSI.sub("", r.stdout), ANSI.sub("", r.stderr)

    def sub(self, *args: str, user: str | None = None, **env: str) -> tuple[int, str, str]:
        """A real process through the console script."""
        full = dict(os.environ)
        full.pop("CARBONHUB_TOKEN", None)
        full.update(self.env(user), **env)
        p = subprocess.run(
            [str(CARBONHUB), *args], env=full, capture_output=True, text=True, timeout=300
        )
        return p.returncode, p.stdout, p.stderr

    def ok(self, *args: str, user: str | None = None, **env: str) -> Any:
        """Run with --json, expect exit 0, return the parsed output."""
        code, out, err = self.run(*args, "--json", user=user, **env)
        assert code == 0, f"{args}: exit {code}: {err}"
        return json.loads(out)

    def error(self, *args: str, user: str | None = None, process: bool = False, **env: str) -> str:
        """Expect a failure reported as one line on stderr starting with "error"."""
        code, out, err = (self.sub if process else self.run)(*args, user=user, **env)
        assert code != 0, f"{args} succeeded: {out}"
        lines = err.strip().splitlines()
        assert len(lines) == 1, f"{args}: stderr is not one line:\n{err}"
        assert lines[0].startswith("error"), lines[0]
        return lines[0]

    def login(self, user: str, password: str | None = None) -> None:
        code, out, err = self.run(
            "login", user, "--password", password or f"password-{user}", user=user
        )
        assert code == 0, err
        assert out.startswith(f"logged in as {user}")


def state(url: str) -> dict[str, Any]:
    """Everything a failed command must leave as it was."""
    engine = sa.create_engine(normalise_url(url))
    try:
        with engine.connect() as c:
            out: dict[str, Any] = {}
            for table in ("journal", "transfers", "holds", "accounts", "unit_blocks"):
                out[table] = c.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
            out["holdings"] = sorted(
                tuple(r)
                for r in c.execute(
                    sa.text("SELECT account_id, unit_class, posted, pending, held FROM holdings")
                )
            )
            return out
    finally:
        engine.dispose()


@pytest.fixture
def cli(db_url: str, tmp_path: Path) -> Iterator[Cli]:
    yield Cli(db_url, tmp_path)
    cli_support._db = None


def holdings(cli: Cli, user: str, account: str) -> dict[str, int]:
    acc = cli.ok("registry", "account", account, user=user)
    rows = [h for h in acc["holdings"] if h["unit_class"] == UC]
    return rows[0] if rows else {"posted": 0, "pending": 0, "held": 0, "available": 0}


# ------------------------------------------------------------ the whole registry flow


def test_registry_end_to_end(cli: Cli, tmp_path: Path) -> None:
    code, out, err = cli.sub("db", "upgrade")
    assert code == 0, err
    assert "database at head" in out

    ea = cli.ok("user", "entity", "华能武汉发电有限公司", "--credit-code", "91420100MA4KX0001A")
    eb = cli.ok(
        "user",
        "entity",
        "武汉钢铁有限公司",
        "--credit-code",
        "91420100MA4KX0002B",
        "--sector",
        "steel",
    )
    assert ea["credit_code"] == "91420100MA4KX0001A" and eb["sector"] == "steel"
    cli.error("user", "entity", "重复", "--credit-code", "91420100MA4KX0001A")

    op1 = cli.ok("user", "create", "op1", "--role", "operator", "--password", "password-op1")
    assert op1["role"] == "operator"
    cli.ok("user", "create", "op2", "--role", "operator", CARBONHUB_NEW_PASSWORD="password-op2")
    cli.ok(
        *f"user create alice --role enterprise --entity {ea['id']}".split(),
        "--password",
        "password-alice",
    )
    cli.ok(
        *f"user create bob --role enterprise --entity {eb['id']}".split(),
        "--password",
        "password-bob",
    )
    cli.error("user", "create", "eve", "--role", "enterprise", "--password", "short")

    # login: once through the console script with the password from the environment
    code, out, err = cli.sub("login", "alice", user="alice", CARBONHUB_PASSWORD="password-alice")
    assert code == 0, err
    assert out.startswith("logged in as alice (enterprise)")
    assert (tmp_path / "alice.token").stat().st_mode & 0o077 == 0
    for u in ("op1", "op2", "bob"):
        cli.login(u)
    assert "LOGIN_FAILED" in cli.error("login", "bob", "--password", "wrong-password")

    # accounts: requested by the holder, approved by an operator
    a = cli.ok("registry", "request-account", "华能武汉 持有账户", user="alice")
    b = cli.ok("registry", "request-account", "武钢 持有账户", user="bob")
    assert a["status"] == "REQUESTED" and m.parse_account_id(a["id"]) == a["id"]
    assert "ROLE_NOT_ALLOWED" in cli.error("registry", "approve-account", a["id"], user="alice")
    assert cli.ok("registry", "approve-account", a["id"], user="op1")["status"] == "OPEN"
    assert cli.ok("registry", "approve-account", b["id"], user="op1")["status"] == "OPEN"
    a, b = a["id"], b["id"]

    # issuance: maker op1, checker op2
    t = cli.ok("registry", "issue", UC, "1000000", user="op1")
    assert t["status"] == "PENDING"
    assert [x["id"] for x in cli.ok("registry", "approvals", user="op2")] == [t["id"]]
    assert "SAME_OPERATOR" in cli.error("registry", "approve", t["id"], user="op1")
    assert cli.ok("registry", "approve", t["id"], user="op2")["status"] == "COMPLETED"
    assert cli.ok("registry", "approvals", user="op2") == []

    # allocation, one by one and in bulk from a CSV file
    al = cli.ok("registry", "allocate", a, UC, "300000", user="op1")
    cli.ok("registry", "approve", al["id"], user="op2")
    csv_file = tmp_path / "allocation.csv"
    csv_file.write_text(f"account_id,unit_class,quantity\n{a},{UC},1000\n{b},{UC},200000\n")
    bulk = cli.ok("registry", "allocate-bulk", str(csv_file), user="op1")
    assert bulk["count"] == 2 and bulk["quantity"] == 201_000 and bulk["transfers"] == 2
    done = cli.ok("registry", "approve-batch", bulk["batch_ref"], user="op2")
    assert done["approved"] == 2

    # the same allocation from a GBK file, as Excel on a Chinese Windows saves it; the cells
    # carry ideographic spaces (U+3000) typed with a Chinese input method
    gbk = tmp_path / "allocation-gbk.csv"
    gbk.write_bytes(
        f"account_id,unit_class,quantity\r\n{a}\u3000,{UC},2000\r\n{b},{UC},3000\u3000\r\n".encode(
            "gbk"
        )
    )
    with pytest.raises(UnicodeDecodeError):
        gbk.read_bytes().decode("utf-8")
    bulk = cli.ok("registry", "allocate-bulk", str(gbk), user="op1")
    assert bulk["count"] == 2 and bulk["quantity"] == 5_000
    cli.ok("registry", "approve-batch", bulk["batch_ref"], user="op2")
    assert holdings(cli, "alice", a)["posted"] == 303_000
    assert holdings(cli, "bob", b)["posted"] == 203_000

    # bad files: one line, non-zero exit, nothing changed
    before = state(cli.url)
    bad = {
        "columns.csv": f"account,class,qty\n{a},{UC},10\n".encode(),
        "duplicate.csv": f"account_id,unit_class,quantity\n{a},{UC},10\n{b},{UC},5\n{a},{UC},7\n".encode(),
        "quantity.csv": f"account_id,unit_class,quantity\n{a},{UC},-10\n".encode(),
        "unknown-account.csv": (
            f"account_id,unit_class,quantity\n{a},{UC},10\n"
            f"{m.make_account_id('CN', m.AccountType.HOLDING, 999)},{UC},10\n"
        ).encode(),
        "class-gbk.csv": f"account_id,unit_class,quantity\n{a},配额-2023,10\n".encode("gbk"),
        "empty.csv": b"account_id,unit_class,quantity\n",
        "latin1.csv": "account_id,unit_class,quantity\n\xe9\xff,x,1\n".encode("latin-1"),
    }
    messages = {}
    for name, content in bad.items():
        (tmp_path / name).write_bytes(content)
        messages[name] = cli.error("registry", "allocate-bulk", str(tmp_path / name), user="op1")
    assert "CSV_COLUMNS" in messages["columns.csv"]
    assert "CSV_DUPLICATE" in messages["duplicate.csv"] and "line 4" in messages["duplicate.csv"]
    assert "CSV_QUANTITY" in messages["quantity.csv"]
    assert "ACCOUNT_NOT_FOUND" in messages["unknown-account.csv"]
    assert "row 2" in messages["unknown-account.csv"]
    assert "配额-2023" in messages["class-gbk.csv"]  # decoded as GBK, not mojibake
    assert "BULK_EMPTY" in messages["empty.csv"]
    assert "CSV_ENCODING" in messages["latin1.csv"]
    assert "no such file" in cli.error(
        "registry", "allocate-bulk", str(tmp_path / "missing.csv"), user="op1"
    )
    assert state(cli.url) == before
    assert cli.ok("registry", "approvals", user="op2") == []

    # the holder's own operations
    tr = cli.ok("registry", "transfer", a, b, UC, "1234", "--reason", "合同 2026-001", user="alice")
    assert tr["status"] == "COMPLETED" and tr["quantity"] == 1234
    assert "NOT_ACCOUNT_HOLDER" in cli.error("registry", "transfer", a, b, UC, "1", user="bob")
    sur = cli.ok("registry", "surrender", a, UC, "1000", "--year", "2023", user="alice")
    assert sur["status"] == "COMPLETED" and sur["compliance_year"] == 2023
    can = cli.ok(
        "registry", "cancel", a, UC, "10", "--beneficiary", "2026 武汉马拉松", user="alice"
    )
    assert can["status"] == "COMPLETED" and can["beneficiary"] == "2026 武汉马拉松"
    hold = cli.ok(
        "registry",
        "hold",
        a,
        UC,
        "5000",
        "--kind",
        "PLEDGE",
        "--lien-holder",
        eb["id"],
        user="alice",
    )
    assert hold["status"] == "ACTIVE"
    h = holdings(cli, "alice", a)
    assert (h["posted"], h["held"], h["available"]) == (300_756, 5_000, 295_756)
    assert [x["id"] for x in cli.ok("registry", "holds", "--account", a, user="alice")] == [
        hold["id"]
    ]
    assert "RELEASE_NOT_ALLOWED" in cli.error("registry", "release", hold["id"], user="alice")
    rel = cli.ok("registry", "release", hold["id"], "--reason", "loan repaid", user="bob")
    assert rel["status"] == "RELEASED"
    assert holdings(cli, "alice", a)["held"] == 0

    # queries
    mine = cli.ok("registry", "transfers", user="alice")
    assert tr["id"] in {x["id"] for x in mine}
    assert all(a in (x["from_account"], x["to_account"]) for x in mine)
    latest = cli.ok("registry", "transfers", "--account", b, "--limit", "1", user="bob")
    assert [x["id"] for x in latest] == [tr["id"]]
    traced = []
    for blk in cli.ok("registry", "blocks", b, user="bob"):
        where = cli.ok("registry", "serial", blk["serial"], user="op1")
        assert [x["account_id"] for x in where["blocks"]] == [b]
        assert where["history"][0]["op"] == "ISSUE"
        if where["history"][-1]["id"] == tr["id"]:
            traced.append(blk)
    assert sum(x["size"] for x in traced) == 1234
    assert "NOT_ACCOUNT_HOLDER" in cli.error(
        "registry", "serial", traced[0]["serial"], user="alice"
    )
    totals = {x["unit_class"]: x for x in cli.ok("registry", "totals")}
    cea = totals[UC]
    assert cea["issued"] == 1_000_000
    assert (cea["surrendered"], cea["cancelled"]) == (1_000, 10)
    assert cea["unallocated"] == 1_000_000 - 506_000
    assert cea["issued"] == cea["unallocated"] + cea["held"] + cea["surrendered"] + cea["cancelled"]

    # the same queries as tables, for people
    code, out, err = cli.run("registry", "accounts", user="op1")
    assert code == 0, err
    assert a in out and b in out and "OPEN" in out
    code, out, err = cli.run("registry", "totals")
    assert code == 0 and UC in out and "1000000" in out, err

    # a pending proposal shows in the approval queue
    al = cli.ok("registry", "allocate", b, UC, "10", user="op1")
    assert [x["id"] for x in cli.ok("registry", "approvals", user="op1")] == [al["id"]]

    # idempotency keys: a retry returns the first result, other input with the key is refused
    k = f"cli-{uuid.uuid4().hex}"
    first = cli.ok("registry", "transfer", a, b, UC, "7", "--key", k, user="alice")
    again = cli.ok("registry", "transfer", a, b, UC, "7", "--key", k, user="alice")
    assert again["id"] == first["id"]
    before = state(cli.url)
    assert "IDEMPOTENCY_KEY_REUSED" in cli.error(
        "registry", "transfer", a, b, UC, "8", "--key", k, user="alice"
    )
    assert state(cli.url) == before

    # the journal: a receipt with its inclusion proof, and the daily checkpoints
    receipt = cli.ok("journal", "receipt", str(first["journal_seq"]))
    assert receipt["entry"]["seq"] == first["journal_seq"]
    assert receipt["entry"]["payload"]["transfer_id"] == first["id"]
    assert "ENTRY_NOT_FOUND" in cli.error("journal", "receipt", "999999")
    assert cli.ok("journal", "checkpoint") == {"closed": []}  # today is not finished yet

    # logout revokes the token, not only the file
    token = (tmp_path / "bob.token").read_text().strip()
    code, out, err = cli.run("logout", user="bob")
    assert code == 0 and "logged out" in out, err
    assert not (tmp_path / "bob.token").exists()
    assert "TOKEN_REVOKED" in cli.error("registry", "accounts", CARBONHUB_TOKEN=token)

    code, out, err = cli.sub("verify")
    assert code == 0, err
    assert out.startswith("ok:")
    code, out, _ = cli.sub("verify", "--json")
    assert code == 0 and json.loads(out)["ok"] is True


def test_logout_with_the_token_in_the_environment_revokes_it(cli: Cli, world: World) -> None:
    token = world.auth.login("bob", "password-bob")["token"]
    code, out, err = cli.run("logout", user="bob", CARBONHUB_TOKEN=token)
    assert code == 0 and "logged out" in out, err
    assert "TOKEN_REVOKED" in cli.error("registry", "accounts", CARBONHUB_TOKEN=token)


def test_a_csv_row_with_more_fields_than_the_header_is_rejected(cli: Cli, world: World) -> None:
    cli.login("op1")
    f = cli.home / "extra.csv"
    f.write_text(f"account_id,unit_class,quantity\n{world.b},{UC},1,000\n")
    before = state(cli.url)
    cli.error("registry", "allocate-bulk", str(f), user="op1")
    assert state(cli.url) == before


# ------------------------------------------------------------ bad input


@pytest.fixture
def logged_in(cli: Cli, world: World) -> tuple[Cli, World]:
    cli.login("alice")
    cli.login("op1")
    return cli, world


def _unknown(w: World) -> str:
    return m.make_account_id("CN", m.AccountType.HOLDING, 999)


def _wrong_check_digits(w: World) -> str:
    return w.b[:-2] + f"{(int(w.b[-2:]) + 1) % 100:02d}"


# case → (arguments, part of the error code)
BAD_INPUT: dict[str, Any] = {
    "negative after --": (lambda w: ["transfer", w.a, w.b, UC, "--", "-5"], "QUANTITY"),
    "all after --": (lambda w: ["transfer", "--", w.a, w.b, UC, "-5"], "QUANTITY"),
    "zero": (lambda w: ["transfer", w.a, w.b, UC, "0"], "QUANTITY_NOT_POSITIVE"),
    "unknown account": (lambda w: ["transfer", w.a, _unknown(w), UC, "5"], "ACCOUNT_NOT_FOUND"),
    "wrong check digits": (
        lambda w: ["transfer", w.a, _wrong_check_digits(w), UC, "5"],
        "CHECK_DIGITS",
    ),
    "malformed account": (lambda w: ["transfer", w.a, "CN-200-1", UC, "5"], "MALFORMED"),
    "unknown class": (lambda w: ["transfer", w.a, w.b, "CEA-2031", "5"], "UNIT_CLASS"),
    "bad class": (lambda w: ["transfer", w.a, w.b, "EUA-2023", "5"], "UNIT_CLASS"),
    "too much": (lambda w: ["transfer", w.a, w.b, UC, "500001"], "INSUFFICIENT"),
    "negative surrender": (
        lambda w: ["surrender", w.a, UC, "--year", "2023", "--", "-1"],
        "QUANTITY",
    ),
    "surrender year": (lambda w: ["surrender", w.a, UC, "1", "--year", "1999"], "YEAR"),
    "hold kind": (lambda w: ["hold", w.a, UC, "1", "--kind", "LIEN"], "HOLD_KIND"),
    "system account": (lambda w: ["request-account", "x", "--type", "ISSUANCE"], "TYPE"),
    "cancel to nobody": (lambda w: ["cancel", w.a, UC, "1", "--beneficiary", " "], "REQUIRED"),
}


def test_bad_input_is_one_error_line_and_changes_nothing(logged_in: tuple[Cli, World]) -> None:
    cli, world = logged_in
    before = state(cli.url)
    wrong = {}
    for case, (make_args, code) in BAD_INPUT.items():
        try:
            line = cli.error("registry", *make_args(world), user="alice")
            assert code in line, line
            assert state(cli.url) == before, "state changed"
        except AssertionError as err:
            wrong[case] = str(err).splitlines()[0]
    assert not wrong, wrong

    # the same through the console script, as a user sees it
    unknown = _unknown(world)
    line = cli.error("registry", "transfer", world.a, unknown, UC, "5", user="alice", process=True)
    assert line == f"error ACCOUNT_NOT_FOUND: no account {unknown}"
    line = cli.error("registry", "transfer", world.a, world.b, UC, "--", "-5", process=True)
    assert line.startswith("error not logged in")
    code, _, err = cli.sub(
        "registry", "transfer", world.a, world.b, UC, "--", "-5", user="alice", CARBONHUB_TOKEN="x"
    )
    assert code != 0 and err.startswith("error TOKEN_INVALID"), err
    assert state(cli.url) == before


def test_a_quantity_that_is_not_a_number_is_one_error_line(logged_in: tuple[Cli, World]) -> None:
    cli, world = logged_in
    before = state(cli.url)
    for args in (["abc"], ["1.5"], ["--", "1e3"]):
        cli.error("registry", "transfer", world.a, world.b, UC, *args, user="alice", process=True)
        assert state(cli.url) == before
    assert "USAGE" in cli.error("registry", "no-such-command", process=True)
    assert "USAGE" in cli.error("registry", "transfer", world.a, process=True)


def test_input_that_looks_like_markup_is_echoed_verbatim(logged_in: tuple[Cli, World]) -> None:
    cli, world = logged_in
    line = cli.error("registry", "transfer", "[/]", world.b, UC, "1", user="alice", process=True)
    assert "'[/]'" in line, line
    line = cli.error("registry", "serial", "[red]abc", user="alice", process=True)
    assert "[red]abc" in line, line
    line = cli.error("registry", "[bold]x", process=True)
    assert "[bold]x" in line, line


# ------------------------------------------------------------ database and demo


@pytest.fixture
def empty_url(tmp_path: Path) -> Iterator[str]:
    if not ON_PG:
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    name = f"carbonhub_cli_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(_pg_admin_url(PG_URL, "postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield _pg_admin_url(PG_URL, name)
    finally:
        with admin.connect() as c:
            c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def test_db_upgrade_on_an_empty_database(empty_url: str, tmp_path: Path) -> None:
    cli = Cli(empty_url, tmp_path)
    code, out, err = cli.sub("db", "upgrade")
    assert code == 0, err
    first = state(empty_url)
    assert first["accounts"] == 3  # issuance, surrender, cancellation
    code, out, err = cli.sub("db", "upgrade")
    assert code == 0 and "database at head" in out, err
    assert state(empty_url) == first  # a second upgrade changes nothing
    code, _, err = cli.sub("verify")
    assert code == 0, err


@pytest.mark.slow
def test_demo_seeds_once_and_verifies(cli: Cli) -> None:
    code, out, err = cli.sub("demo", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["seeded"] is True
    assert result["logins"]
    seeded = state(cli.url)
    assert seeded["transfers"] > 0

    code, out, err = cli.sub("demo")
    assert code == 0, err
    assert "already present" in out
    assert state(cli.url) == seeded

    code, out, err = cli.sub("verify")
    assert code == 0, err
    assert out.startswith("ok:")

    # a demo login works
    login = result["logins"][0]
    code, out, err = cli.run("login", login["username"], "--password", login["password"])
    assert code == 0, err

    # two whole compliance years: 2021 with one entity in deficit and its penalty, 2022 all met
    s2021 = cli.ok("compliance", "status", "--year", "2021", user=None)
    assert [e["status"] for e in s2021["entities"]].count("in-deficit") == 1
    assert all(e["status"] == "compliant" for e in s2021["entities"] if e["shortfall"] == 0)
    penalties = cli.ok("compliance", "penalties", "--year", "2021", user=None)["penalties"]
    assert [p["entity_id"] for p in penalties] == s2021["non_compliant"]
    assert (
        cli.ok("compliance", "status", "--year", "2022", user=None)["compliance_rate"] == "1.0000"
    )
