"""Authorisation matrix: every role × every endpoint under /api/v1, one real request per cell.

The table below is the specification. Cells:
  A  allowed: the request (a plausible one, see REQUESTS) succeeds with a 2xx
  D  denied: 401 (no token) or 403, problem+json, the ledger unchanged, the denial journaled
  B  should be denied but is allowed today: a bug, run as a strict xfail with the reason in BUGS

Endpoints are enumerated from the app's routes; an endpoint without a row fails
`test_every_endpoint_has_a_matrix_row`, so a new endpoint cannot ship without its row.

One market is built per module (users for every role, entity-linked where the role holds
accounts); cells that change state build the object they act on first (a fresh pending
transfer, a fresh account request, …), so the order of cells does not matter.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from carbonhub.core import auth as core_auth
from carbonhub.core.auth import Actor, AuthService
from carbonhub.core.db import Database
from carbonhub.core.settings import Settings
from carbonhub.registry import model as m
from carbonhub.registry.service import RegistryService
from carbonhub.tables import metadata
from tests.conftest import fresh_url
from tests.test_api import CHEAP_HASHER, assert_problem, make_client, reject

CEA = "CEA-2023"
ROLES = (
    "operator",  # op1 (op2 is the other half of maker–checker in the set-ups)
    "owner",  # alice, enterprise, holds account A: the account every request targets
    "nonowner",  # bob, enterprise, holds account B
    "verifier",  # vera, no entity
    "member",  # exchange member with an entity, no account
    "bank",  # settlement bank with an entity
    "partner",  # data partner (metro) with an entity
    "participant",  # citizen, no entity
    "lender",  # lender with an entity
    "public",  # no token
)

# fmt: off
#                                                     op ow no ve me ba pa pt le pu
MATRIX: dict[str, str] = {
    "GET /health":                                     "A  A  A  A  A  A  A  A  A  A",
    "POST /auth/token":                                "A  A  A  A  A  A  A  A  A  A",
    "GET /auth/me":                                    "A  A  A  A  A  A  A  A  A  D",
    "POST /auth/tokens/{token_id}/revoke":             "A  A  D  D  D  D  D  D  D  D",
    "GET /journal/entries":                            "A  D  D  D  D  D  D  D  D  D",
    "GET /journal/entries/{seq}/receipt":              "A  A  D  D  D  D  D  D  D  D",
    "GET /journal/checkpoints":                        "A  A  A  A  A  A  A  A  A  A",
    "POST /journal/checkpoints":                       "A  D  D  D  D  D  D  D  D  D",
    "GET /registry/totals":                            "A  A  A  A  A  A  A  A  A  A",
    "GET /registry/market":                            "A  A  A  A  A  A  A  A  A  A",
    "POST /registry/market/suspension":                "A  D  D  D  D  D  D  D  D  D",
    "GET /registry/accounts":                          "A  A  A  D  A  A  A  D  A  D",
    "POST /registry/accounts":                         "A  A  A  D  A  D  D  D  A  D",
    "GET /registry/accounts/{account_id}":             "A  A  D  D  D  D  D  D  D  D",
    "POST /registry/accounts/{account_id}/approve":    "A  D  D  D  D  D  D  D  D  D",
    "POST /registry/accounts/{account_id}/reject":     "A  D  D  D  D  D  D  D  D  D",
    "POST /registry/accounts/{account_id}/status":     "A  D  D  D  D  D  D  D  D  D",
    "GET /registry/accounts/{account_id}/blocks":      "A  A  D  D  D  D  D  D  D  D",
    "GET /registry/accounts/{account_id}/trusted":     "A  A  D  D  D  D  D  D  D  D",
    "POST /registry/accounts/{account_id}/trusted":    "A  A  D  D  D  D  D  D  D  D",
    "GET /registry/transfers":                         "A  A  A  D  A  A  A  D  A  D",
    "POST /registry/transfers":                        "D  A  D  D  D  D  D  D  D  D",
    "GET /registry/transfers/{transfer_id}":           "A  A  D  D  D  D  D  D  D  D",
    "POST /registry/transfers/{transfer_id}/approve":  "A  D  D  D  D  D  D  D  D  D",
    "POST /registry/transfers/{transfer_id}/void":     "A  D  D  D  D  D  D  D  D  D",
    "POST /registry/transfers/{transfer_id}/reverse":  "A  D  D  D  D  D  D  D  D  D",
    "POST /registry/issuances":                        "A  D  D  D  D  D  D  D  D  D",
    "POST /registry/allocations":                      "A  D  D  D  D  D  D  D  D  D",
    "POST /registry/allocations/bulk":                 "A  D  D  D  D  D  D  D  D  D",
    "POST /registry/batches/{batch_ref}/approve":      "A  D  D  D  D  D  D  D  D  D",
    "POST /registry/surrenders":                       "D  A  D  D  D  D  D  D  D  D",
    "POST /registry/cancellations":                    "D  A  D  D  D  D  D  D  D  D",
    "POST /registry/court-transfers":                  "A  D  D  D  D  D  D  D  D  D",
    "GET /registry/approvals":                         "A  D  D  D  D  D  D  D  D  D",
    "GET /registry/holds":                             "A  A  A  D  A  A  A  D  A  D",
    "POST /registry/holds":                            "A  A  D  D  D  D  D  D  D  D",
    "POST /registry/holds/{hold_id}/release":          "A  A  D  D  D  D  D  D  D  D",
    "POST /registry/serial-flags":                     "A  D  D  D  D  D  D  D  D  D",
    "GET /registry/serials/{serial}":                  "A  A  D  D  D  D  D  D  D  D",
    "POST /registry/run-due":                          "A  D  D  D  D  D  D  D  D  D",
}
# fmt: on

# Cells marked B, with the bug each shows. Empty today: the five found by the first run of this
# matrix (operators moving holders' units alone through transfers, surrenders and cancellations;
# verifiers and participants listing holds) were fixed in 58b81f7 and are plain D cells now.
BUGS: dict[tuple[str, str], str] = {}

# Endpoints with an optional token: the public is refused with 403, not 401.
PUBLIC_403 = {"GET /registry/serials/{serial}"}


# ---------------------------------------------------------------- the market


@dataclass
class Market:
    db: Database
    client: TestClient
    auth: AuthService
    reg: RegistryService
    actors: dict[str, Actor]
    op2: Actor
    a: str
    b: str
    entity_a: str
    entity_b: str
    alice_seq: int  # a journal entry written by alice
    tokens: dict[str, dict[str, str]] = field(default_factory=dict)

    def key(self) -> str:
        return f"mx-{uuid.uuid4().hex}"

    def headers(self, role: str) -> dict[str, str]:
        return {**self.tokens.get(role, {}), "Idempotency-Key": self.key()}

    # set-ups for cells that act on something: op2 proposes, so op1 (the operator) may check

    def pending_allocation(self, quantity: int = 1) -> str:
        t = self.reg.allocate(
            self.op2, self.key(), to_account=self.a, unit_class=CEA, quantity=quantity
        )
        return str(t["id"])

    def completed_allocation(self) -> str:
        tid = self.pending_allocation()
        self.reg.approve(self.actors["operator"], self.key(), tid)
        return tid

    def requested_account(self) -> str:
        acc = self.reg.request_account(
            self.actors["owner"], self.key(), type="TRADING", name="trading desk"
        )
        return str(acc["id"])

    def open_account(self) -> str:
        acc = self.requested_account()
        self.reg.decide_account(self.op2, self.key(), acc, approve=True)
        return acc


USERS = {
    # role: (username, role value, entity key or None)
    "operator": ("op1", "operator", None),
    "owner": ("alice", "enterprise", "A"),
    "nonowner": ("bob", "enterprise", "B"),
    "verifier": ("vera", "verifier", None),
    "member": ("mia", "member", "M"),
    "bank": ("bank1", "bank", "K"),
    "partner": ("metro", "partner", "P"),
    "participant": ("citizen", "participant", None),
    "lender": ("lena", "lender", "L"),
}
ENTITIES = {
    "A": ("华能武汉发电有限公司", "enterprise", "91420100MA4KX0001A"),
    "B": ("武汉钢铁有限公司", "enterprise", "91420100MA4KX0002B"),
    "M": ("武汉碳交易会员有限公司", "member", "91420100MA4KX0003C"),
    "K": ("汉口银行", "bank", "91420100MA4KX0004D"),
    "P": ("武汉地铁集团", "partner", "91420100MA4KX0005E"),
    "L": ("湖北碳基金", "lender", "91420100MA4KX0006F"),
}


@pytest.fixture(scope="module")
def market(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Market]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(core_auth, "_hasher", CHEAP_HASHER)  # see tests/test_api.py
        url = fresh_url(database_url, Path(tmp_path_factory.mktemp("authz")))
        db = Database(Settings(database_url=url, check_invariants=True))
        reg, auth = RegistryService(db), AuthService(db)
        reg.bootstrap()
        ents = {
            k: auth.create_entity(n, kind, code)["id"] for k, (n, kind, code) in ENTITIES.items()
        }
        actors: dict[str, Actor] = {}
        for role, (username, role_value, ent) in USERS.items():
            auth.create_user(username, f"password-{username}", role_value, ents.get(ent or ""))
            actors[role] = auth.authenticate(username, f"password-{username}")
        auth.create_user("op2", "password-op2", "operator")
        op2 = auth.authenticate("op2", "password-op2")
        k = lambda: f"setup-{uuid.uuid4().hex}"  # noqa: E731
        a = reg.request_account(actors["owner"], k(), type="HOLDING", name="A 持有账户")["id"]
        b = reg.request_account(actors["nonowner"], k(), type="HOLDING", name="B 持有账户")["id"]
        reg.decide_account(actors["operator"], k(), a, approve=True)
        reg.decide_account(actors["operator"], k(), b, approve=True)
        t = reg.issue(actors["operator"], k(), unit_class=CEA, quantity=1_000_000)
        reg.approve(op2, k(), t["id"])
        al = reg.allocate(actors["operator"], k(), to_account=a, unit_class=CEA, quantity=500_000)
        reg.approve(op2, k(), al["id"])
        j = metadata.tables["journal"]
        with db.read() as uow:
            alice_seq = uow.conn.execute(
                sa.select(sa.func.min(j.c.seq)).where(
                    j.c.actor == "alice", j.c.type == "registry.account_created"
                )
            ).scalar_one()
        mk = Market(
            db, make_client(db), auth, reg, actors, op2, a, b, ents["A"], ents["B"], alice_seq
        )
        mk.tokens = {
            role: {"Authorization": f"Bearer {auth.issue_token(actor)['token']}"}
            for role, actor in actors.items()
        }
        yield mk
        db.dispose()


# ---------------------------------------------------------------- one plausible request per row

Request = tuple[str, Any]  # (url below /api/v1, JSON body or None)


def _login(mk: Market, role: str) -> Request:
    username = USERS["owner" if role == "public" else role][0]
    return "/auth/token", {"username": username, "password": f"password-{username}"}


def _revoke(mk: Market, role: str) -> Request:
    token_id = mk.auth.issue_token(mk.actors["owner"])["token_id"]
    return f"/auth/tokens/{token_id}/revoke", None


def _request_account(mk: Market, role: str) -> Request:
    body: dict[str, Any] = {"type": "TRADING", "name": f"{role} desk"}
    if role == "operator":
        body["entity_id"] = mk.entity_a  # an operator opens for a named entity
    return "/registry/accounts", body


def _hold_release(mk: Market, role: str) -> Request:
    hold = mk.reg.place_hold(
        mk.actors["owner"],
        mk.key(),
        account_id=mk.a,
        unit_class=CEA,
        quantity=1,
        kind="EXCHANGE_RESERVATION",
    )
    return f"/registry/holds/{hold['id']}/release", {"reason": "order cancelled"}


def _batch_approve(mk: Market, role: str) -> Request:
    ref = mk.reg.allocate_bulk(mk.op2, mk.key(), [(mk.a, CEA, 1)])["batch_ref"]
    return f"/registry/batches/{ref}/approve", None


def _serial_flag(mk: Market, role: str) -> Request:
    # a range of a batch that was never issued: flagging it taints nobody's units
    serial = m.Block(CEA, "420000", 99, 1, 10).serial("CN")
    return "/registry/serial-flags", {"serial": serial, "reason": "reported stolen"}


REQUESTS: dict[str, Callable[[Market, str], Request]] = {
    "GET /health": lambda mk, r: ("/health", None),
    "POST /auth/token": _login,
    "GET /auth/me": lambda mk, r: ("/auth/me", None),
    "POST /auth/tokens/{token_id}/revoke": _revoke,
    "GET /journal/entries": lambda mk, r: ("/journal/entries?limit=5", None),
    "GET /journal/entries/{seq}/receipt": lambda mk, r: (
        f"/journal/entries/{mk.alice_seq}/receipt",
        None,
    ),
    "GET /journal/checkpoints": lambda mk, r: ("/journal/checkpoints", None),
    "POST /journal/checkpoints": lambda mk, r: ("/journal/checkpoints", None),
    "GET /registry/totals": lambda mk, r: ("/registry/totals", None),
    "GET /registry/market": lambda mk, r: ("/registry/market", None),
    "POST /registry/market/suspension": lambda mk, r: (
        "/registry/market/suspension",
        {"suspended": False, "reason": "no change"},
    ),
    "GET /registry/accounts": lambda mk, r: ("/registry/accounts?limit=10", None),
    "POST /registry/accounts": _request_account,
    "GET /registry/accounts/{account_id}": lambda mk, r: (f"/registry/accounts/{mk.a}", None),
    "POST /registry/accounts/{account_id}/approve": lambda mk, r: (
        f"/registry/accounts/{mk.requested_account()}/approve",
        None,
    ),
    "POST /registry/accounts/{account_id}/reject": lambda mk, r: (
        f"/registry/accounts/{mk.requested_account()}/reject",
        None,
    ),
    "POST /registry/accounts/{account_id}/status": lambda mk, r: (
        f"/registry/accounts/{mk.open_account()}/status",
        {"status": "RESTRICTED", "reason": "KYC review"},
    ),
    "GET /registry/accounts/{account_id}/blocks": lambda mk, r: (
        f"/registry/accounts/{mk.a}/blocks",
        None,
    ),
    "GET /registry/accounts/{account_id}/trusted": lambda mk, r: (
        f"/registry/accounts/{mk.a}/trusted",
        None,
    ),
    "POST /registry/accounts/{account_id}/trusted": lambda mk, r: (
        f"/registry/accounts/{mk.a}/trusted",
        {"account_id": mk.b, "trusted": True},
    ),
    "GET /registry/transfers": lambda mk, r: ("/registry/transfers?limit=10", None),
    "POST /registry/transfers": lambda mk, r: (
        "/registry/transfers",
        {"from_account": mk.a, "to_account": mk.b, "unit_class": CEA, "quantity": 1},
    ),
    "GET /registry/transfers/{transfer_id}": lambda mk, r: (
        f"/registry/transfers/{mk.completed_allocation()}",
        None,
    ),
    "POST /registry/transfers/{transfer_id}/approve": lambda mk, r: (
        f"/registry/transfers/{mk.pending_allocation()}/approve",
        None,
    ),
    "POST /registry/transfers/{transfer_id}/void": lambda mk, r: (
        f"/registry/transfers/{mk.pending_allocation()}/void",
        {"reason": "entered twice"},
    ),
    "POST /registry/transfers/{transfer_id}/reverse": lambda mk, r: (
        f"/registry/transfers/{mk.completed_allocation()}/reverse",
        {"reason": "allocated to the wrong account"},
    ),
    "POST /registry/issuances": lambda mk, r: (
        "/registry/issuances",
        {"unit_class": "CEA-2024", "quantity": 100},
    ),
    "POST /registry/allocations": lambda mk, r: (
        "/registry/allocations",
        {"to_account": mk.a, "unit_class": CEA, "quantity": 1},
    ),
    "POST /registry/allocations/bulk": lambda mk, r: (
        "/registry/allocations/bulk",
        {"rows": [{"to_account": mk.a, "unit_class": CEA, "quantity": 1}]},
    ),
    "POST /registry/batches/{batch_ref}/approve": _batch_approve,
    "POST /registry/surrenders": lambda mk, r: (
        "/registry/surrenders",
        {"from_account": mk.a, "unit_class": CEA, "quantity": 1, "compliance_year": 2023},
    ),
    "POST /registry/cancellations": lambda mk, r: (
        "/registry/cancellations",
        {"from_account": mk.a, "unit_class": CEA, "quantity": 1, "beneficiary": "汉马 2025"},
    ),
    "POST /registry/court-transfers": lambda mk, r: (
        "/registry/court-transfers",
        {
            "from_account": mk.a,
            "to_account": mk.b,
            "unit_class": CEA,
            "quantity": 1,
            "legal_basis": "(2025) 鄂01执123号",
        },
    ),
    "GET /registry/approvals": lambda mk, r: ("/registry/approvals", None),
    "GET /registry/holds": lambda mk, r: ("/registry/holds", None),
    "POST /registry/holds": lambda mk, r: (
        "/registry/holds",
        {"account_id": mk.a, "unit_class": CEA, "quantity": 1, "kind": "EXCHANGE_RESERVATION"},
    ),
    "POST /registry/holds/{hold_id}/release": _hold_release,
    "POST /registry/serial-flags": _serial_flag,
    "GET /registry/serials/{serial}": lambda mk, r: (
        "/registry/serials/CN-CEA-2023-420000-1-500001",  # A's lowest unit: transfers take the top
        None,
    ),
    "POST /registry/run-due": lambda mk, r: ("/registry/run-due", None),
}


# ---------------------------------------------------------------- the matrix is complete


def api_endpoints(app: FastAPI) -> set[str]:
    """'METHOD /path' of every route under /api/v1, walking included routers and mounts."""
    found: set[str] = set()

    def walk(routes: Any, prefix: str) -> None:
        for r in routes:
            included = getattr(r, "original_router", None)  # FastAPI ≥ 0.13x: lazy includes
            if included is not None:
                walk(included.routes, prefix + r.include_context.prefix)
            elif getattr(r, "methods", None):
                for method in set(r.methods) - {"HEAD"}:
                    found.add(f"{method} {prefix}{r.path}")
            elif getattr(r, "routes", None):  # a Mount
                walk(r.routes, prefix + getattr(r, "path", ""))

    walk(app.routes, "")
    return {e.replace("/api/v1", "", 1) for e in found if e.split(" ", 1)[1].startswith("/api/v1")}


def test_every_endpoint_has_a_matrix_row(market: Market) -> None:
    app = market.client.app
    assert isinstance(app, FastAPI)
    endpoints = api_endpoints(app)
    # the walk sees at least what the OpenAPI document lists (it also sees hidden routes)
    documented = {
        f"{method.upper()} {path.replace('/api/v1', '', 1)}"
        for path, ops in app.openapi()["paths"].items()
        for method in ops
    }
    assert documented <= endpoints, documented - endpoints
    assert endpoints - set(MATRIX) == set(), "endpoints without a matrix row"
    assert set(MATRIX) - endpoints == set(), "matrix rows for endpoints that do not exist"
    assert set(REQUESTS) == set(MATRIX)
    for row, cells in MATRIX.items():
        assert len(cells.split()) == len(ROLES), row
        assert set(cells.split()) <= {"A", "D", "B"}, row
    for (row, role), _ in BUGS.items():
        assert MATRIX[row].split()[ROLES.index(role)] == "B", (row, role)
    for row, cells in MATRIX.items():
        for role, cell in zip(ROLES, cells.split(), strict=True):
            assert cell != "B" or (row, role) in BUGS, (row, role)


# ---------------------------------------------------------------- every cell


def _cells() -> Iterator[Any]:
    for row, cells in MATRIX.items():
        for role, cell in zip(ROLES, cells.split(), strict=True):
            marks = []
            if cell == "B":
                marks.append(pytest.mark.xfail(strict=True, reason=BUGS[(row, role)]))
            yield pytest.param(row, role, cell, id=f"{row} | {role}", marks=marks)


@pytest.mark.parametrize(("row", "role", "cell"), list(_cells()))
def test_cell(market: Market, row: str, role: str, cell: str) -> None:
    method, _ = row.split(" ", 1)
    url, body = REQUESTS[row](market, role)
    headers = market.headers(role)

    def send() -> Any:
        return market.client.request(method, f"/api/v1{url}", headers=headers, json=body)

    if cell == "A":
        r = send()
        assert 200 <= r.status_code < 300, (r.status_code, r.text[:300])
        assert r.headers["content-type"].startswith("application/json")
        return
    status = 401 if role == "public" and row not in PUBLIC_403 else 403
    reject(market.db, send, status)


def test_denials_name_the_rule(market: Market) -> None:
    """A spot check that a denial says why, in both languages."""
    r = market.client.post(
        "/api/v1/registry/transfers",
        headers=market.headers("nonowner"),
        json={"from_account": market.a, "to_account": market.b, "unit_class": CEA, "quantity": 1},
    )
    body = assert_problem(r, 403, "NOT_ACCOUNT_HOLDER")
    assert body["detail_zh"] != body["detail"]
