"""One whole compliance year (2022 under its national rules) for many power entities, phase by
phase, through the compliance service as an operator, the entities and a verifier drive it.

    python bench/compliance_cycle.py --json                       # 3,700 entities × 10 units
    python bench/compliance_cycle.py --entities 200 --json        # pro-rata figure for 3,700
    CARBONHUB_DATABASE_URL=postgresql:///postgres python bench/compliance_cycle.py --json

Set-up (not timed): a fresh database (SQLite: a temporary file, WAL with synchronous=FULL as the
engine sets it; PostgreSQL when CARBONHUB_DATABASE_URL is set: a new database on that server,
dropped afterwards), migrated and bootstrapped; two operators, a verification body, and per
entity a user, an approved holding account, coverage from 2021, a facility and --units
generating units (600 MW, category I, water-cooled coal); 10^11 t of CEA-2022 issued and
approved. Passwords are hashed with a cheap argon2 setting (set-up only).

Timed phases:
  evidence        both years' monthly records, one import per year (the rows built beforehand,
                  untimed): per unit and month its coal (measured NCV and element carbon),
                  generation and supply, 36 lines per unit and year
  then the year's cycle as `carbonhub compliance run-cycle` drives it (compliance/cycle.py),
  each step by its party:
  pre_allocation  one `allocate(PRE)` for the market, then the checker's batch approval
  reports         each entity's `submit_report` (emissions worked out from its evidence)
  verification    assign, verify, confirm, per report
  true_up         one `allocate(TRUE_UP)`, then the checker's batch approval
  surrender       each entity surrenders what it owes from what it holds
  status          one `status` call: every entity's status and the compliance rate

`cycle_s` is the cycle (pre_allocation to status), what `carbonhub compliance run-cycle` drives
and issue 4 calls a whole cycle; the target is checked against it. `total_s` adds the evidence
import (a year of monthly records in one file: in a real year they arrive month by month),
reported beside it.

stdout gets one JSON object with --json (a short text summary otherwise); progress goes to
stderr. With fewer entities than 3,700 the JSON adds both scaled pro rata to 3,700.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import fresh_database, machine

from carbonhub.compliance.cycle import Cast, run_cycle
from carbonhub.compliance.service import ComplianceService
from carbonhub.core import auth as core_auth
from carbonhub.core import migrate
from carbonhub.core.auth import Actor, AuthService
from carbonhub.core.db import Database
from carbonhub.registry.service import RegistryService

NATIONAL_ENTITIES = 3_700  # the national market after its 2024 expansion (ICAP)
TARGET_S = 60.0
YEAR = 2022


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Keys:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> str:
        self.n += 1
        return f"bench-cycle-{self.n:09d}"


def evidence_rows(entities: list[str], units: int) -> list[dict[str, Any]]:
    """The year's monthly evidence of every entity, as the rows of one import file."""
    out: list[dict[str, Any]] = []
    for e in entities:
        for u in range(units):
            code = f"#{u + 1}"
            for month in range(1, 13):
                out += [
                    {
                        "entity": e,
                        "unit": code,
                        "month": month,
                        "kind": "fuel",
                        "item": "bituminous_coal",
                        "quantity": "30000",
                        "ncv": "20.9",
                        "element_carbon": "0.55",
                    },
                    {
                        "entity": e,
                        "unit": code,
                        "month": month,
                        "kind": "generation",
                        "quantity": "250000",
                    },
                    {
                        "entity": e,
                        "unit": code,
                        "month": month,
                        "kind": "supply",
                        "quantity": "235000",
                    },
                ]
    return out


def set_up(
    db: Database, entities: int, units: int, key: Keys
) -> tuple[ComplianceService, dict[str, Actor], list[tuple[str, Actor, list[str]]]]:
    migrate.upgrade(db)
    core_auth._hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    auth, reg = AuthService(db), RegistryService(db)
    reg.bootstrap()
    svc = ComplianceService(db, reg)
    for name, role in (("bench-op1", "operator"), ("bench-op2", "operator")):
        auth.create_user(name, f"password-{name}", role)
    body = auth.create_entity("基准核查机构", "verifier", "91110000MA00GR0001")["id"]
    auth.create_user("bench-vic", "password-bench-vic", "verifier", body)
    actors = {
        n: auth.authenticate(n, f"password-{n}") for n in ("bench-op1", "bench-op2", "bench-vic")
    }
    op1 = actors["bench-op1"]
    out = []
    for i in range(entities):
        e = auth.create_entity(
            f"基准电厂 {i:04d}", "enterprise", f"91420100MA{i:08d}", sector="power"
        )
        name = f"bench-e{i:04d}"
        auth.create_user(name, f"password-{name}", "enterprise", e["id"])
        actor = auth.authenticate(name, f"password-{name}")
        account = reg.request_account(actor, key(), type="HOLDING", name=f"基准电厂 {i:04d}")["id"]
        reg.decide_account(op1, key(), account, approve=True)
        svc.cover_entity(
            op1,
            key(),
            entity_id=e["id"],
            account_id=account,
            sector="power",
            region="HB",
            since=YEAR - 1,
        )
        fac = svc.add_facility(op1, key(), entity_id=e["id"], name="基准厂区")["id"]
        unit_ids = [
            svc.add_unit(
                op1,
                key(),
                facility_id=fac,
                code=f"#{u + 1}",
                category="I",
                capacity_mw="600",
                cooling="water",
                fuel="coal",
            )["id"]
            for u in range(units)
        ]
        out.append((e["id"], actor, unit_ids))
        if (i + 1) % 200 == 0:
            log(f"set-up: {i + 1} entities")
    t = reg.issue(op1, key(), unit_class=f"CEA-{YEAR}", quantity=10**11)
    reg.approve(actors["bench-op2"], key(), t["id"])
    return svc, actors, out


@contextmanager
def timed(phases: dict[str, float], name: str) -> Iterator[None]:
    log(f"{name} …")
    t0 = time.perf_counter()
    yield
    phases[name] = round(time.perf_counter() - t0, 3)
    log(f"{name}: {phases[name]} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entities", type=int, default=NATIONAL_ENTITIES)
    ap.add_argument("--units", type=int, default=10)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    key = Keys()
    phases: dict[str, float] = {}
    with fresh_database(os.environ.get("CARBONHUB_DATABASE_URL")) as db:
        t0 = time.perf_counter()
        svc, actors, ents = set_up(db, args.entities, args.units, key)
        setup_s = round(time.perf_counter() - t0, 1)
        op1 = actors["bench-op1"]
        rows = {y: evidence_rows([e for e, _, _ in ents], args.units) for y in (YEAR - 1, YEAR)}
        with timed(phases, "evidence"):
            for y, file_rows in rows.items():
                got = svc.import_evidence(op1, key(), year_=y, rows=file_rows)
                if got["rejected"]:
                    raise SystemExit(f"rejected rows: {got['rejected'][:3]}")
        cast = Cast(
            op1, actors["bench-op2"], actors["bench-vic"], {e: actor for e, actor, _ in ents}
        )
        log("cycle …")
        cycle = run_cycle(svc, cast, YEAR)
        for name, done in cycle["phases"].items():
            phases[name] = done["seconds"]
            log(f"{name}: {done['seconds']} s {done}")
        backend = db.backend
    cycle_s = round(sum(v for k, v in phases.items() if k != "evidence"), 3)
    total = round(sum(phases.values()), 3)
    result: dict[str, Any] = {
        "benchmark": "compliance_cycle",
        "machine": machine(),
        "backend": backend,
        "entities": args.entities,
        "units_per_entity": args.units,
        "evidence_rows": sum(len(r) for r in rows.values()),
        "setup_s": setup_s,
        "phases_s": phases,
        "cycle_s": cycle_s,
        "total_s": total,
        "in_deficit": cycle["status"].get("in-deficit", 0),
        "target": {"seconds_below": TARGET_S, "for_entities": NATIONAL_ENTITIES},
    }
    scale = NATIONAL_ENTITIES / args.entities
    if args.entities != NATIONAL_ENTITIES:
        result["pro_rata_cycle_s"] = round(cycle_s * scale, 1)
        result["pro_rata_total_s"] = round(total * scale, 1)
    result["meets_target"] = backend == "sqlite" and cycle_s * scale < TARGET_S
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        print(f"{args.entities} entities × {args.units} units: cycle {cycle_s} s, {total} s")


if __name__ == "__main__":
    main()
