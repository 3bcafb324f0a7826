"""Authorisation matrix: every role × every endpoint under /api/v1, one real request per cell.

The table below is the specification. Cells:
  A  allowed: the request (a plausible one, see REQUESTS) succeeds with a 2xx
  D  denied: 401 (no token) or 403, problem+json, the ledger unchanged, the denial journaled
  N  allowed, but the role has nothing there: 404 problem+json, nothing changed, nothing
     journaled ("my membership" or "my cash account" of a user whose entity has none, or who has
     no entity at all)
  B  should be denied but is allowed today: a bug, run as a strict xfail with the reason in BUGS

Denied and N cells also leave every exchange and settlement table as it was.

Endpoints are enumerated from the app's routes; an endpoint without a row fails
`test_every_endpoint_has_a_matrix_row`, so a new endpoint cannot ship without its row.

One market is built per module (users for every role, entity-linked where the role holds
accounts); cells that change state build the object they act on first (a fresh pending
transfer, a fresh account request, a fresh order, quote or auction, …), so the order of cells
does not matter.

The exchange side of the market: the owner (A), the non-owner (B) and the member (M) are exchange
members with funded cash accounts at the bank (K); a counterparty member X (no column: it only
posts the listings, quotes and auctions that cells act on) holds units too. CEA2023 trades under
the national rules, HBEA2023 under Hubei's, and the clock stands at Monday 2026-11-23 14:00
Asia/Shanghai, when every mode is in session. Orders and takes act on the owner's order or X's
listing; deals on the owner's quote (withdraw), X's quote (counter, confirm) or a negotiation
between the owner and X (reading it); cash accounts on A's.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from carbonhub.compliance.service import ComplianceService
from carbonhub.core import auth as core_auth
from carbonhub.core.auth import Actor, AuthService
from carbonhub.core.db import Database
from carbonhub.core.settings import Settings
from carbonhub.exchange.service import ExchangeService
from carbonhub.registry import model as m
from carbonhub.registry.service import RegistryService
from carbonhub.tables import metadata
from tests.conftest import Clock, fresh_url
from tests.test_api import CHEAP_HASHER, assert_problem, make_client, reject
from tests.test_exchange_api import exchange_snapshot

CEA = "CEA-2023"


def evidence(unit_id: str) -> list[dict[str, Any]]:
    """A year of a coal unit's evidence: measured coal and its generation."""
    out: list[dict[str, Any]] = []
    for month in range(1, 13):
        out.append(
            {
                "kind": "fuel",
                "month": month,
                "item": "bituminous_coal",
                "quantity": "100000",
                "params": {"ncv": "20.900", "element_carbon": "0.5500"},
            }
        )
        out.append({"kind": "generation", "month": month, "unit_id": unit_id, "quantity": "250000"})
    return out


ROLES = (
    "operator",  # op1 (op2 is the other half of maker–checker in the set-ups)
    "owner",  # alice, enterprise, holds account A: the account every request targets
    "nonowner",  # bob, enterprise, holds account B
    "verifier",  # vera, of the verification body V
    "member",  # exchange member with an entity, a holding account (no units) and cash
    "bank",  # settlement bank with an entity
    "partner",  # data partner (metro) with an entity
    "participant",  # citizen, no entity
    "lender",  # lender with an entity
    "public",  # no token
)

# fmt: off
#                                                          op ow no ve me ba pa pt le pu
MATRIX: dict[str, str] = {
    "GET /health":                                        "A  A  A  A  A  A  A  A  A  A",
    "POST /auth/token":                                   "A  A  A  A  A  A  A  A  A  A",
    "GET /auth/me":                                       "A  A  A  A  A  A  A  A  A  D",
    "POST /auth/tokens/{token_id}/revoke":                "A  A  D  D  D  D  D  D  D  D",
    "GET /journal/entries":                               "A  D  D  D  D  D  D  D  D  D",
    "GET /journal/entries/{seq}/receipt":                 "A  A  D  D  D  D  D  D  D  D",
    "GET /journal/checkpoints":                           "A  A  A  A  A  A  A  A  A  A",
    "POST /journal/checkpoints":                          "A  D  D  D  D  D  D  D  D  D",
    "GET /registry/totals":                               "A  A  A  A  A  A  A  A  A  A",
    "GET /registry/market":                               "A  A  A  A  A  A  A  A  A  A",
    "POST /registry/market/suspension":                   "A  D  D  D  D  D  D  D  D  D",
    "GET /registry/accounts":                             "A  A  A  A  A  A  A  D  A  D",
    "POST /registry/accounts":                            "A  A  A  D  A  D  D  D  A  D",
    "GET /registry/accounts/{account_id}":                "A  A  D  D  D  D  D  D  D  D",
    "POST /registry/accounts/{account_id}/approve":       "A  D  D  D  D  D  D  D  D  D",
    "POST /registry/accounts/{account_id}/reject":        "A  D  D  D  D  D  D  D  D  D",
    "POST /registry/accounts/{account_id}/status":        "A  D  D  D  D  D  D  D  D  D",
    "GET /registry/accounts/{account_id}/blocks":         "A  A  D  D  D  D  D  D  D  D",
    "GET /registry/accounts/{account_id}/trusted":        "A  A  D  D  D  D  D  D  D  D",
    "POST /registry/accounts/{account_id}/trusted":       "A  A  D  D  D  D  D  D  D  D",
    "GET /registry/transfers":                            "A  A  A  A  A  A  A  D  A  D",
    "POST /registry/transfers":                           "D  A  D  D  D  D  D  D  D  D",
    "GET /registry/transfers/{transfer_id}":              "A  A  D  D  D  D  D  D  D  D",
    "POST /registry/transfers/{transfer_id}/approve":     "A  D  D  D  D  D  D  D  D  D",
    "POST /registry/transfers/{transfer_id}/void":        "A  D  D  D  D  D  D  D  D  D",
    "POST /registry/transfers/{transfer_id}/reverse":     "A  D  D  D  D  D  D  D  D  D",
    "POST /registry/issuances":                           "A  D  D  D  D  D  D  D  D  D",
    "POST /registry/allocations":                         "A  D  D  D  D  D  D  D  D  D",
    "POST /registry/allocations/bulk":                    "A  D  D  D  D  D  D  D  D  D",
    "POST /registry/batches/{batch_ref}/approve":         "A  D  D  D  D  D  D  D  D  D",
    "POST /registry/surrenders":                          "D  A  D  D  D  D  D  D  D  D",
    "POST /registry/cancellations":                       "D  A  D  D  D  D  D  D  D  D",
    "POST /registry/court-transfers":                     "A  D  D  D  D  D  D  D  D  D",
    "GET /registry/approvals":                            "A  D  D  D  D  D  D  D  D  D",
    "GET /registry/holds":                                "A  A  A  A  A  A  A  D  A  D",
    "POST /registry/holds":                               "A  A  D  D  D  D  D  D  D  D",
    "POST /registry/holds/{hold_id}/release":             "A  A  D  D  D  D  D  D  D  D",
    "POST /registry/serial-flags":                        "A  D  D  D  D  D  D  D  D  D",
    "GET /registry/serials/{serial}":                     "A  A  D  D  D  D  D  D  D  D",
    "POST /registry/run-due":                             "A  D  D  D  D  D  D  D  D  D",
    # exchange
    "GET /exchange/instruments":                          "A  A  A  A  A  A  A  A  A  A",
    "POST /exchange/instruments":                         "A  D  D  D  D  D  D  D  D  D",
    "GET /exchange/instruments/{code}":                   "A  A  A  A  A  A  A  A  A  A",
    "POST /exchange/instruments/{code}/status":           "A  D  D  D  D  D  D  D  D  D",
    "GET /exchange/calendar":                             "A  A  A  A  A  A  A  A  A  A",
    "POST /exchange/holidays":                            "A  D  D  D  D  D  D  D  D  D",
    "GET /exchange/members":                              "A  A  A  A  A  A  A  A  A  A",
    "POST /exchange/members":                             "A  D  D  D  D  D  D  D  D  D",
    "POST /exchange/members/{entity_id}/status":          "A  D  D  D  D  D  D  D  D  D",
    "GET /exchange/me":                                   "N  A  A  N  A  N  N  N  N  D",
    "POST /exchange/orders":                              "D  A  A  D  A  D  D  D  D  D",
    "GET /exchange/orders":                               "A  A  A  A  A  A  A  A  A  D",
    "GET /exchange/orders/{order_id}":                    "A  A  D  D  D  D  D  D  D  D",
    "POST /exchange/orders/{order_id}/cancel":            "A  A  D  D  D  D  D  D  D  D",
    "POST /exchange/orders/{order_id}/amend":             "A  A  D  D  D  D  D  D  D  D",
    "POST /exchange/takes":                               "D  A  A  D  A  D  D  D  D  D",
    "GET /exchange/deals":                                "A  A  A  A  A  A  A  A  A  D",
    "POST /exchange/deals":                               "D  A  A  D  A  D  D  D  D  D",
    "GET /exchange/deals/{deal_id}":                      "A  A  D  D  D  D  D  D  D  D",
    "POST /exchange/deals/{deal_id}/counter":             "D  A  A  D  A  D  D  D  D  D",
    "POST /exchange/deals/{deal_id}/confirm":             "D  A  A  D  A  D  D  D  D  D",
    "POST /exchange/deals/{deal_id}/withdraw":            "D  A  D  D  D  D  D  D  D  D",
    "GET /exchange/auctions":                             "A  A  A  A  A  A  A  A  A  A",
    "POST /exchange/auctions":                            "D  A  A  D  A  D  D  D  D  D",
    "GET /exchange/auctions/{auction_id}":                "A  A  A  A  A  A  A  A  A  A",
    "POST /exchange/auctions/{auction_id}/bids":          "D  A  A  D  A  D  D  D  D  D",
    "GET /exchange/market/{instrument}/depth":            "A  A  A  A  A  A  A  A  A  A",
    "GET /exchange/market/{instrument}/listings":         "A  A  A  A  A  A  A  A  A  A",
    "GET /exchange/market/{instrument}/trades":           "A  A  A  A  A  A  A  A  A  A",
    "GET /exchange/market/{instrument}/bars":             "A  A  A  A  A  A  A  A  A  A",
    "GET /exchange/market/{instrument}/quote":            "A  A  A  A  A  A  A  A  A  A",
    "GET /exchange/index":                                "A  A  A  A  A  A  A  A  A  A",
    "GET /exchange/statistics":                           "A  A  A  A  A  A  A  A  A  A",
    "GET /exchange/trades":                               "A  A  A  A  A  A  A  A  A  D",
    # settlement
    "POST /settlement/cash-accounts":                     "A  D  D  D  D  A  D  D  D  D",
    "GET /settlement/cash-accounts":                      "A  A  A  A  A  A  A  A  A  D",
    "GET /settlement/cash-accounts/mine":                 "N  A  A  N  A  N  N  N  N  D",
    "GET /settlement/cash-accounts/{account_id}":         "A  A  D  D  D  A  D  D  D  D",
    "GET /settlement/cash-accounts/{account_id}/entries": "A  A  D  D  D  A  D  D  D  D",
    "POST /settlement/cash-accounts/{account_id}/fund":   "D  D  D  D  D  A  D  D  D  D",
    "POST /settlement/cash-accounts/{account_id}/defund": "D  D  D  D  D  A  D  D  D  D",
    "POST /settlement/days/{day}/settle":                 "A  D  D  D  D  D  D  D  D  D",
    "GET /settlement/days/{day}/report":                  "A  A  A  A  A  A  A  A  A  A",
    "GET /settlement/days/{day}/statement":               "A  A  D  D  D  D  D  D  D  D",
    "GET /settlement/days/{day}/failures":                "A  D  D  D  D  D  D  D  D  D",
    # compliance (the verifier column is vera of the verification body V)
    "GET /compliance/plan-years":                         "A  A  A  A  A  A  A  A  A  A",
    "GET /compliance/factors":                            "A  A  A  A  A  A  A  A  A  A",
    "POST /compliance/factors":                           "A  D  D  D  D  D  D  D  D  D",
    "POST /compliance/entities":                          "A  D  D  D  D  D  D  D  D  D",
    "GET /compliance/entities":                           "A  A  A  D  D  D  D  D  D  D",
    "GET /compliance/entities/{entity_id}":               "A  A  D  D  D  D  D  D  D  D",
    "POST /compliance/entities/{entity_id}/facilities":   "A  A  D  D  D  D  D  D  D  D",
    "POST /compliance/facilities/{facility_id}/units":    "A  A  D  D  D  D  D  D  D  D",
    "POST /compliance/entities/{entity_id}/years/{year}/records":
                                                          "A  A  D  D  D  D  D  D  D  D",
    "GET /compliance/entities/{entity_id}/years/{year}/records":
                                                          "A  A  D  D  D  D  D  D  D  D",
    "POST /compliance/years/{year}/evidence-import":      "A  A  A  D  D  D  D  D  D  D",
    "POST /compliance/years/{year}/evidence-file":        "A  A  A  D  D  D  D  D  D  D",
    "POST /compliance/entities/{entity_id}/years/{year}/report":
                                                          "A  A  D  D  D  D  D  D  D  D",
    "GET /compliance/reports":                            "A  A  A  A  D  D  D  D  D  D",
    "GET /compliance/verification-queue":                 "D  D  D  A  D  D  D  D  D  D",
    "GET /compliance/reports/{report_id}":                "A  A  D  A  D  D  D  D  D  D",
    "POST /compliance/reports/{report_id}/assign":        "A  D  D  D  D  D  D  D  D  D",
    "POST /compliance/reports/{report_id}/verify":        "D  D  D  A  D  D  D  D  D  D",
    "POST /compliance/reports/{report_id}/return":        "A  D  D  A  D  D  D  D  D  D",
    "POST /compliance/reports/{report_id}/confirm":       "A  D  D  D  D  D  D  D  D  D",
    "POST /compliance/years/{year}/reports/assign":       "A  D  D  D  D  D  D  D  D  D",
    "POST /compliance/years/{year}/reports/confirm":      "A  D  D  D  D  D  D  D  D  D",
    "POST /compliance/years/{year}/allocations":          "A  D  D  D  D  D  D  D  D  D",
    "GET /compliance/years/{year}/allocations":           "A  A  A  D  D  D  D  D  D  D",
    "POST /compliance/years/{year}/exclusions":           "A  D  D  D  D  D  D  D  D  D",
    "POST /compliance/entities/{entity_id}/years/{year}/surrender":
                                                          "D  A  D  D  D  D  D  D  D  D",
    "POST /compliance/entities/{entity_id}/years/{year}/borrow":
                                                          "A  D  D  D  D  D  D  D  D  D",
    "GET /compliance/entities/{entity_id}/years/{year}/status":
                                                          "A  A  D  D  D  D  D  D  D  D",
    "GET /compliance/years/{year}/status":                "A  D  D  D  D  D  D  D  D  D",
    "POST /compliance/years/{year}/penalties":            "A  D  D  D  D  D  D  D  D  D",
    "GET /compliance/years/{year}/penalties":             "A  D  D  D  D  D  D  D  D  D",
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
    exchange: ExchangeService  # the app's: its books in memory are the ones requests use
    x: Actor  # the counterparty member (no column)
    entity_k: str  # the bank
    cash_a: str  # A's cash account
    compliance: ComplianceService  # the app's
    entity_v: str  # the verification body
    facility_a: str  # A's power plant (A is covered from 2019)
    report_a: str  # A's 2023 report, verified by V and confirmed
    tokens: dict[str, dict[str, str]] = field(default_factory=dict)
    serial: Iterator[int] = field(default_factory=lambda: itertools.count(1))

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

    def trading_with_units(self) -> str:
        """An open trading account of the owner holding 1 t: A itself is covered by compliance,
        so the registry's own surrender acts on this one."""
        acc = self.open_account()
        self.reg.transfer(
            self.actors["owner"],
            self.key(),
            from_account=self.a,
            to_account=acc,
            unit_class=CEA,
            quantity=1,
        )
        return acc

    # exchange set-ups: fresh names, the owner's orders and quotes, X's listings, quotes, auctions

    def fresh_entity(self) -> str:
        n = next(self.serial)
        ent = self.auth.create_entity(f"矩阵主体 {n}", "enterprise", f"91420100MA4{n:07d}")
        return str(ent["id"])

    def fresh_member(self) -> dict[str, str]:
        """An entity with an open holding account, not (yet) an exchange member."""
        entity = self.fresh_entity()
        acc = self.reg.request_account(
            self.actors["operator"], self.key(), type="HOLDING", name="持有账户", entity_id=entity
        )
        self.reg.decide_account(self.op2, self.key(), acc["id"], approve=True)
        return {"entity_id": entity, "account_id": str(acc["id"])}

    def fresh_code(self) -> str:
        return f"MX{next(self.serial):06d}"

    def fresh_day(self) -> str:
        return (date(2030, 1, 1) + timedelta(days=next(self.serial))).isoformat()

    def owners_order(self, quantity: int = 1) -> str:
        """A buy listing of the owner's, below X's asks (listings never cross)."""
        o = self.exchange.place_order(
            self.actors["owner"],
            self.key(),
            instrument="CEA2023",
            mode="LISTING",
            side="B",
            price="79.00",
            quantity=quantity,
        )
        return str(o["id"])

    def x_listing(self) -> str:
        o = self.exchange.place_order(
            self.x,
            self.key(),
            instrument="CEA2023",
            mode="LISTING",
            side="S",
            price="81.00",
            quantity=1,
        )
        return str(o["id"])

    def quote(self, actor: Actor) -> str:
        d = self.exchange.quote(
            actor, self.key(), instrument="CEA2023", side="S", price="80.00", quantity=100_000
        )
        return str(d["id"])

    def negotiation(self) -> str:
        """The owner's quote, countered by X: only they (and operators) may read it."""
        deal = self.quote(self.actors["owner"])
        self.exchange.counter(self.x, self.key(), deal, price="79.00", quantity=100_000)
        return deal

    def x_auction(self) -> str:
        a = self.exchange.announce(
            self.x,
            self.key(),
            instrument="CEA2023",
            side="S",
            quantity=10,
            reserve_price="80.00",
            opens_at=OPENS,
            closes_at=CLOSES,
        )
        return str(a["id"])

    # compliance set-ups: units of A's plant, covered entities and reports in a given state

    def fresh_unit(self) -> tuple[str, str]:
        """(id, code) of a new generating unit of A's plant."""
        code = f"#{next(self.serial)}"
        unit = self.compliance.add_unit(
            self.actors["owner"],
            self.key(),
            facility_id=self.facility_a,
            code=code,
            category="I",
            capacity_mw="600",
            cooling="water",
            fuel="coal",
        )
        return str(unit["id"]), code

    def fresh_covered(self, year: int = 2023) -> dict[str, str]:
        """A new power entity covered from 2019, with one unit and a year's evidence."""
        op = self.actors["operator"]
        ent = self.fresh_member()
        self.compliance.cover_entity(
            op, self.key(), **ent, sector="power", region="湖北", since=2019
        )
        fac = self.compliance.add_facility(op, self.key(), entity_id=ent["entity_id"], name="电厂")
        unit = self.compliance.add_unit(
            op,
            self.key(),
            facility_id=fac["id"],
            code="#1",
            category="I",
            capacity_mw="600",
            cooling="water",
            fuel="coal",
        )
        self.compliance.record_months(
            op, self.key(), entity_id=ent["entity_id"], year_=year, records=evidence(unit["id"])
        )
        return ent | {"unit_id": str(unit["id"])}

    def fresh_report(self, status: str, year: int = 2023) -> tuple[str, str]:
        """(report, entity): a fresh entity's report for `year`, SUBMITTED,
        UNDER_VERIFICATION (V) or VERIFIED (at 1,000 t)."""
        op = self.actors["operator"]
        entity = self.fresh_covered(year)["entity_id"]
        rid = str(self.compliance.submit_report(op, self.key(), entity_id=entity, year_=year)["id"])
        if status in ("UNDER_VERIFICATION", "VERIFIED"):
            self.compliance.assign_verifier(
                op, self.key(), report_id=rid, verifier_entity_id=self.entity_v
            )
        if status == "VERIFIED":
            self.compliance.verify_report(
                self.actors["verifier"],
                self.key(),
                report_id=rid,
                verified_emissions=1_000,
                findings="符合",
            )
        return rid, entity

    def borrower(self) -> str:
        """A fresh entity verified at 1,000 t for 2021 and trued up with nothing (it supplied
        no power): it owes 200 t under the 20 % cap, so it may borrow up to 100 t of CEA-2023."""
        op = self.actors["operator"]
        rid, entity = self.fresh_report("VERIFIED", 2021)
        self.compliance.confirm_report(op, self.key(), report_id=rid)
        self.compliance.allocate(op, self.key(), year_=2021, kind="TRUE_UP")
        return entity


NOW = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)  # Monday 14:00 in Shanghai: every mode trades
DAY = "2026-11-23"
OPENS, CLOSES = "2026-11-23T06:00:00.000000Z", "2026-11-23T06:30:00.000000Z"  # 14:00–14:30


USERS = {
    # role: (username, role value, entity key or None)
    "operator": ("op1", "operator", None),
    "owner": ("alice", "enterprise", "A"),
    "nonowner": ("bob", "enterprise", "B"),
    "verifier": ("vera", "verifier", "V"),
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
    "X": ("武汉碳资产管理有限公司", "enterprise", "91420100MA4KX0007G"),  # the counterparty
    "V": ("中环联合认证中心", "verifier", "91110000MA4KX0008H"),  # a verification body
}


@pytest.fixture(scope="module")
def market(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Market]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(core_auth, "_hasher", CHEAP_HASHER)  # see tests/test_api.py
        url = fresh_url(database_url, Path(tmp_path_factory.mktemp("authz")))
        db = Database(Settings(database_url=url, check_invariants=True), clock=Clock(NOW))
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
        auth.create_user("xena", "password-xena", "enterprise", ents["X"])
        x = auth.authenticate("xena", "password-xena")
        k = lambda: f"setup-{uuid.uuid4().hex}"  # noqa: E731
        a = reg.request_account(actors["owner"], k(), type="HOLDING", name="A 持有账户")["id"]
        b = reg.request_account(actors["nonowner"], k(), type="HOLDING", name="B 持有账户")["id"]
        reg.decide_account(actors["operator"], k(), a, approve=True)
        reg.decide_account(actors["operator"], k(), b, approve=True)
        t = reg.issue(actors["operator"], k(), unit_class=CEA, quantity=1_000_000)
        reg.approve(op2, k(), t["id"])
        al = reg.allocate(actors["operator"], k(), to_account=a, unit_class=CEA, quantity=500_000)
        reg.approve(op2, k(), al["id"])
        # the exchange: A, B, M and X are members with cash at K; X holds units to sell
        client = make_client(db)
        exchange, cash = client.app.state.exchange, client.app.state.cash
        acc_m = reg.request_account(actors["member"], k(), type="HOLDING", name="M 持有账户")["id"]
        acc_x = reg.request_account(x, k(), type="HOLDING", name="X 持有账户")["id"]
        reg.decide_account(actors["operator"], k(), acc_m, approve=True)
        reg.decide_account(actors["operator"], k(), acc_x, approve=True)
        al = reg.allocate(
            actors["operator"], k(), to_account=acc_x, unit_class=CEA, quantity=200_000
        )
        reg.approve(op2, k(), al["id"])
        cash_ids = {}
        for e, acc in (("A", a), ("B", b), ("M", acc_m), ("X", acc_x)):
            cash_ids[e] = cash.open_account(actors["bank"], k(), entity_id=ents[e])["id"]
            cash.fund(actors["bank"], k(), account_id=cash_ids[e], amount="1000000000.00")
            exchange.admit_member(actors["operator"], k(), entity_id=ents[e], account_id=acc)
        for code, preset in (("CEA2023", "national"), ("HBEA2023", "hubei")):
            exchange.create_instrument(
                actors["operator"],
                k(),
                code=code,
                unit_class=CEA,
                name=f"{code} allowance",
                reference_price="80.00",
                preset=preset,
            )
        # compliance: A is a covered power entity with a plant, 2022 and 2023 evidence, and a
        # 2023 report verified by V and confirmed
        comp = client.app.state.compliance
        op, owner = actors["operator"], actors["owner"]
        comp.cover_entity(
            op, k(), entity_id=ents["A"], account_id=a, sector="power", region="湖北", since=2019
        )
        fac_a = comp.add_facility(owner, k(), entity_id=ents["A"], name="阳逻电厂")["id"]
        unit_a = comp.add_unit(
            owner,
            k(),
            facility_id=fac_a,
            code="#1",
            category="I",
            capacity_mw="600",
            cooling="water",
            fuel="coal",
        )["id"]
        for y in (2022, 2023):
            comp.record_months(owner, k(), entity_id=ents["A"], year_=y, records=evidence(unit_a))
        report_a = comp.submit_report(owner, k(), entity_id=ents["A"], year_=2023)["id"]
        comp.assign_verifier(op, k(), report_id=report_a, verifier_entity_id=ents["V"])
        comp.verify_report(
            actors["verifier"],
            k(),
            report_id=report_a,
            verified_emissions=2_400_000,
            findings="符合",
        )
        comp.confirm_report(op, k(), report_id=report_a)
        j = metadata.tables["journal"]
        with db.read() as uow:
            alice_seq = uow.conn.execute(
                sa.select(sa.func.min(j.c.seq)).where(
                    j.c.actor == "alice", j.c.type == "registry.account_created"
                )
            ).scalar_one()
        mk = Market(
            db,
            client,
            auth,
            reg,
            actors,
            op2,
            a,
            b,
            ents["A"],
            ents["B"],
            alice_seq,
            exchange,
            x,
            ents["K"],
            cash_ids["A"],
            comp,
            ents["V"],
            fac_a,
            report_a,
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


def _allocate(mk: Market, role: str) -> Request:
    mk.fresh_covered()  # something for the run to do (or to skip, with why), whatever ran before
    return "/compliance/years/2024/allocations", {"kind": "PRE"}


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
        {
            "from_account": mk.trading_with_units(),
            "unit_class": CEA,
            "quantity": 1,
            "compliance_year": 2023,
        },
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
    # exchange
    "GET /exchange/instruments": lambda mk, r: ("/exchange/instruments", None),
    "POST /exchange/instruments": lambda mk, r: (
        "/exchange/instruments",
        {
            "code": mk.fresh_code(),
            "unit_class": CEA,
            "name": "matrix allowance",
            "reference_price": "80.00",
            "preset": "national",
        },
    ),
    "GET /exchange/instruments/{code}": lambda mk, r: ("/exchange/instruments/CEA2023", None),
    "POST /exchange/instruments/{code}/status": lambda mk, r: (
        "/exchange/instruments/CEA2023/status",
        {"suspended": False, "reason": "no change"},
    ),
    "GET /exchange/calendar": lambda mk, r: (f"/exchange/calendar?start={DAY}&days=7", None),
    "POST /exchange/holidays": lambda mk, r: (
        "/exchange/holidays",
        {"day": mk.fresh_day(), "name": "matrix holiday"},
    ),
    "GET /exchange/members": lambda mk, r: ("/exchange/members", None),
    "POST /exchange/members": lambda mk, r: ("/exchange/members", mk.fresh_member()),
    "POST /exchange/members/{entity_id}/status": lambda mk, r: (
        f"/exchange/members/{mk.entity_a}/status",
        {"suspended": False},
    ),
    "GET /exchange/me": lambda mk, r: ("/exchange/me", None),
    "POST /exchange/orders": lambda mk, r: (
        "/exchange/orders",
        {"instrument": "CEA2023", "mode": "LISTING", "side": "B", "price": "79.00", "quantity": 1},
    ),
    "GET /exchange/orders": lambda mk, r: ("/exchange/orders?limit=5", None),
    "GET /exchange/orders/{order_id}": lambda mk, r: (
        f"/exchange/orders/{mk.owners_order()}",
        None,
    ),
    "POST /exchange/orders/{order_id}/cancel": lambda mk, r: (
        f"/exchange/orders/{mk.owners_order()}/cancel",
        None,
    ),
    "POST /exchange/orders/{order_id}/amend": lambda mk, r: (
        f"/exchange/orders/{mk.owners_order(quantity=2)}/amend",
        {"quantity": 1},
    ),
    "POST /exchange/takes": lambda mk, r: (
        "/exchange/takes",
        {"order_id": mk.x_listing(), "quantity": 1},
    ),
    "GET /exchange/deals": lambda mk, r: ("/exchange/deals", None),
    "POST /exchange/deals": lambda mk, r: (
        "/exchange/deals",
        {"instrument": "CEA2023", "side": "B", "price": "80.00", "quantity": 100_000},
    ),
    "GET /exchange/deals/{deal_id}": lambda mk, r: (f"/exchange/deals/{mk.negotiation()}", None),
    "POST /exchange/deals/{deal_id}/counter": lambda mk, r: (
        f"/exchange/deals/{mk.quote(mk.x)}/counter",
        {"price": "79.00", "quantity": 100_000},
    ),
    "POST /exchange/deals/{deal_id}/confirm": lambda mk, r: (
        f"/exchange/deals/{mk.quote(mk.x)}/confirm",
        {"version": 1},
    ),
    "POST /exchange/deals/{deal_id}/withdraw": lambda mk, r: (
        f"/exchange/deals/{mk.quote(mk.actors['owner'])}/withdraw",
        None,
    ),
    "GET /exchange/auctions": lambda mk, r: ("/exchange/auctions", None),
    "POST /exchange/auctions": lambda mk, r: (
        "/exchange/auctions",
        {
            "instrument": "CEA2023",
            "side": "B",
            "quantity": 1,
            "reserve_price": "80.00",
            "opens_at": OPENS,
            "closes_at": CLOSES,
        },
    ),
    "GET /exchange/auctions/{auction_id}": lambda mk, r: (
        f"/exchange/auctions/{mk.x_auction()}",
        None,
    ),
    "POST /exchange/auctions/{auction_id}/bids": lambda mk, r: (
        f"/exchange/auctions/{mk.x_auction()}/bids",
        {"price": "80.00", "quantity": 1},
    ),
    "GET /exchange/market/{instrument}/depth": lambda mk, r: (
        "/exchange/market/CEA2023/depth",
        None,
    ),
    "GET /exchange/market/{instrument}/listings": lambda mk, r: (
        "/exchange/market/CEA2023/listings?side=S",
        None,
    ),
    "GET /exchange/market/{instrument}/trades": lambda mk, r: (
        "/exchange/market/CEA2023/trades",
        None,
    ),
    "GET /exchange/market/{instrument}/bars": lambda mk, r: (
        f"/exchange/market/CEA2023/bars?interval=1m&day={DAY}",
        None,
    ),
    "GET /exchange/market/{instrument}/quote": lambda mk, r: (
        "/exchange/market/CEA2023/quote",
        None,
    ),
    "GET /exchange/index": lambda mk, r: ("/exchange/index", None),
    "GET /exchange/statistics": lambda mk, r: (f"/exchange/statistics?day={DAY}", None),
    "GET /exchange/trades": lambda mk, r: ("/exchange/trades?limit=5", None),
    # settlement
    "POST /settlement/cash-accounts": lambda mk, r: (
        "/settlement/cash-accounts",
        {"entity_id": mk.fresh_entity()}
        | ({"bank_entity_id": mk.entity_k} if r == "operator" else {}),  # an operator names it
    ),
    "GET /settlement/cash-accounts": lambda mk, r: ("/settlement/cash-accounts?limit=5", None),
    "GET /settlement/cash-accounts/mine": lambda mk, r: ("/settlement/cash-accounts/mine", None),
    "GET /settlement/cash-accounts/{account_id}": lambda mk, r: (
        f"/settlement/cash-accounts/{mk.cash_a}",
        None,
    ),
    "GET /settlement/cash-accounts/{account_id}/entries": lambda mk, r: (
        f"/settlement/cash-accounts/{mk.cash_a}/entries",
        None,
    ),
    "POST /settlement/cash-accounts/{account_id}/fund": lambda mk, r: (
        f"/settlement/cash-accounts/{mk.cash_a}/fund",
        {"amount": "1.00"},
    ),
    "POST /settlement/cash-accounts/{account_id}/defund": lambda mk, r: (
        f"/settlement/cash-accounts/{mk.cash_a}/defund",
        {"amount": "1.00"},
    ),
    # last Friday, closed: settling it leaves today's books, orders and trades alone
    "POST /settlement/days/{day}/settle": lambda mk, r: (
        "/settlement/days/2026-11-20/settle",
        None,
    ),
    "GET /settlement/days/{day}/report": lambda mk, r: (f"/settlement/days/{DAY}/report", None),
    "GET /settlement/days/{day}/statement": lambda mk, r: (
        f"/settlement/days/{DAY}/statement?entity_id={mk.entity_a}",
        None,
    ),
    "GET /settlement/days/{day}/failures": lambda mk, r: (f"/settlement/days/{DAY}/failures", None),
    # compliance
    "GET /compliance/plan-years": lambda mk, r: ("/compliance/plan-years", None),
    "GET /compliance/factors": lambda mk, r: ("/compliance/factors", None),
    "POST /compliance/factors": lambda mk, r: (
        "/compliance/factors",
        {
            "table": "matrix.test",
            "key": f"k{next(mk.serial)}",
            "first": 2023,
            "value": "1.5",
            "unit": "t/t",
            "source": "the matrix",
            "certainty": "unverified",
        },
    ),
    "POST /compliance/entities": lambda mk, r: (
        "/compliance/entities",
        mk.fresh_member() | {"sector": "steel", "region": "湖北", "since": 2024},
    ),
    "GET /compliance/entities": lambda mk, r: ("/compliance/entities", None),
    "GET /compliance/entities/{entity_id}": lambda mk, r: (
        f"/compliance/entities/{mk.entity_a}",
        None,
    ),
    "POST /compliance/entities/{entity_id}/facilities": lambda mk, r: (
        f"/compliance/entities/{mk.entity_a}/facilities",
        {"name": f"二期 {next(mk.serial)}"},
    ),
    "POST /compliance/facilities/{facility_id}/units": lambda mk, r: (
        f"/compliance/facilities/{mk.facility_a}/units",
        {
            "code": f"#{next(mk.serial)}",
            "category": "II",
            "capacity_mw": "300",
            "cooling": "air",
            "fuel": "coal",
        },
    ),
    "POST /compliance/entities/{entity_id}/years/{year}/records": lambda mk, r: (
        f"/compliance/entities/{mk.entity_a}/years/2024/records",
        {
            "records": [
                {
                    "kind": "generation",
                    "month": 1,
                    "unit_id": mk.fresh_unit()[0],
                    "quantity": "1000",
                }
            ]
        },
    ),
    "GET /compliance/entities/{entity_id}/years/{year}/records": lambda mk, r: (
        f"/compliance/entities/{mk.entity_a}/years/2023/records",
        None,
    ),
    "POST /compliance/years/{year}/evidence-import": lambda mk, r: (
        "/compliance/years/2024/evidence-import",
        {
            "rows": [
                {
                    "entity": mk.entity_a,
                    "unit": mk.fresh_unit()[1],
                    "month": 1,
                    "kind": "generation",
                    "item": "",
                    "quantity": "1000",
                }
            ]
        },
    ),
    "POST /compliance/years/{year}/evidence-file": lambda mk, r: (
        "/compliance/years/2024/evidence-file",
        f"entity,unit,month,kind,item,quantity\n{mk.entity_a},{mk.fresh_unit()[1]},1,generation,,1000\n".encode(),
    ),
    # the operator submits for a fresh entity, the owner A's 2022 report (once)
    "POST /compliance/entities/{entity_id}/years/{year}/report": lambda mk, r: (
        f"/compliance/entities/{mk.fresh_covered()['entity_id']}/years/2023/report"
        if r == "operator"
        else f"/compliance/entities/{mk.entity_a}/years/2022/report",
        None,
    ),
    "GET /compliance/reports": lambda mk, r: ("/compliance/reports?year=2023", None),
    "GET /compliance/verification-queue": lambda mk, r: ("/compliance/verification-queue", None),
    "GET /compliance/reports/{report_id}": lambda mk, r: (
        f"/compliance/reports/{mk.report_a}",
        None,
    ),
    "POST /compliance/reports/{report_id}/assign": lambda mk, r: (
        f"/compliance/reports/{mk.fresh_report('SUBMITTED')[0]}/assign",
        {"verifier_entity_id": mk.entity_v},
    ),
    "POST /compliance/reports/{report_id}/verify": lambda mk, r: (
        f"/compliance/reports/{mk.fresh_report('UNDER_VERIFICATION')[0]}/verify",
        {"verified_emissions": 1_000, "findings": "符合"},
    ),
    "POST /compliance/reports/{report_id}/return": lambda mk, r: (
        f"/compliance/reports/{mk.fresh_report('UNDER_VERIFICATION')[0]}/return",
        {"reasons": "2 月燃煤量缺少凭证"},
    ),
    "POST /compliance/reports/{report_id}/confirm": lambda mk, r: (
        f"/compliance/reports/{mk.fresh_report('VERIFIED')[0]}/confirm",
        None,
    ),
    "POST /compliance/years/{year}/reports/assign": lambda mk, r: (
        "/compliance/years/2023/reports/assign",
        {"verifier_entity_id": mk.entity_v, "report_ids": [mk.fresh_report("SUBMITTED")[0]]},
    ),
    "POST /compliance/years/{year}/reports/confirm": lambda mk, r: (
        "/compliance/years/2023/reports/confirm",
        {"report_ids": [mk.fresh_report("VERIFIED")[0]]},
    ),
    "POST /compliance/years/{year}/allocations": _allocate,
    "GET /compliance/years/{year}/allocations": lambda mk, r: (
        "/compliance/years/2024/allocations",
        None,
    ),
    "POST /compliance/years/{year}/exclusions": lambda mk, r: (
        "/compliance/years/2023/exclusions",
        {"entity_id": mk.fresh_covered()["entity_id"], "reason": "停产"},
    ),
    "POST /compliance/entities/{entity_id}/years/{year}/surrender": lambda mk, r: (
        f"/compliance/entities/{mk.entity_a}/years/2023/surrender",
        {"unit_class": CEA, "quantity": 1},
    ),
    "POST /compliance/entities/{entity_id}/years/{year}/borrow": lambda mk, r: (
        f"/compliance/entities/{mk.borrower()}/years/2021/borrow",
        {"quantity": 100},
    ),
    "GET /compliance/entities/{entity_id}/years/{year}/status": lambda mk, r: (
        f"/compliance/entities/{mk.entity_a}/years/2023/status",
        None,
    ),
    "GET /compliance/years/{year}/status": lambda mk, r: ("/compliance/years/2023/status", None),
    # 2019: past its deadline, nobody in deficit (no report confirmed), so it may run again
    "POST /compliance/years/{year}/penalties": lambda mk, r: (
        "/compliance/years/2019/penalties",
        {},
    ),
    "GET /compliance/years/{year}/penalties": lambda mk, r: (
        "/compliance/years/2019/penalties",
        None,
    ),
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
        assert set(cells.split()) <= {"A", "D", "N", "B"}, row
    for (row, role), _ in BUGS.items():
        assert MATRIX[row].split()[ROLES.index(role)] == "B", (row, role)
    for row, cells in MATRIX.items():
        for role, cell in zip(ROLES, cells.split(), strict=True):
            assert cell != "B" or (row, role) in BUGS, (row, role)
            assert cell != "N" or role != "public", (row, role)  # the public gets 401 first


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
        if isinstance(body, bytes):  # a file upload
            return market.client.request(
                method,
                f"/api/v1{url}",
                headers={**headers, "Content-Type": "text/csv"},
                content=body,
            )
        return market.client.request(method, f"/api/v1{url}", headers=headers, json=body)

    if cell == "A":
        r = send()
        assert 200 <= r.status_code < 300, (r.status_code, r.text[:300])
        assert r.headers["content-type"].startswith("application/json")
        return
    status = 404 if cell == "N" else 401 if role == "public" and row not in PUBLIC_403 else 403
    before = exchange_snapshot(market.db)
    reject(market.db, send, status)
    assert exchange_snapshot(market.db) == before, "a refused request changed the exchange"


def test_denials_name_the_rule(market: Market) -> None:
    """A spot check that a denial says why, in both languages."""
    r = market.client.post(
        "/api/v1/registry/transfers",
        headers=market.headers("nonowner"),
        json={"from_account": market.a, "to_account": market.b, "unit_class": CEA, "quantity": 1},
    )
    body = assert_problem(r, 403, "NOT_ACCOUNT_HOLDER")
    assert body["detail_zh"] != body["detail"]
