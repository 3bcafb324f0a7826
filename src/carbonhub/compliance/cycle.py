"""One compliance year driven end to end: pre-allocation, reports, verification, true-up,
surrender and status, each step by the party whose step it is.

For scripting, the demo market and the bench: every step goes through the same service calls a
person would make (so every rule, refusal and journal entry is the real one), and each party acts
as itself: the operator allocates, assigns and confirms; a second operator approves the registry
batches; the verification body verifies; each entity submits and surrenders. A step that is done
already is skipped, so a second run changes nothing and a run after new evidence or new purchases
takes up only what is left.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from carbonhub.compliance import model as m
from carbonhub.compliance import store as s
from carbonhub.compliance.service import ComplianceService
from carbonhub.core.auth import Actor, AuthService, Role, users
from carbonhub.core.db import fetch
from carbonhub.core.errors import Conflict, InvalidInput
from carbonhub.core.ids import new_id


@dataclass(frozen=True)
class Cast:
    """Who acts in the cycle. `enterprises`: each covered entity's user (an entity without one
    submits and surrenders nothing)."""

    operator: Actor
    checker: Actor  # the second operator of maker–checker
    verifier: Actor  # a user of the verification body the reports are assigned to
    enterprises: Mapping[str, Actor]


Verified = Callable[[dict[str, Any]], int]  # the verifier's figure for a submitted report
Surrenders = Callable[[str, int], int]  # (entity, tonnes outstanding) → tonnes to surrender


def _key() -> str:
    return f"cycle-{new_id()}"


def run_cycle(
    svc: ComplianceService,
    cast: Cast,
    year_: int,
    *,
    verified: Verified | None = None,
    surrenders: Surrenders | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """The year's whole cycle; returns what each phase did and how long it took.

    `verified` gives the verifier's figure (default: the reported emissions, no misstatement
    found); `surrenders` how much an entity surrenders of what it still owes (default: all it
    can, from its eligible CEA vintages, oldest first)."""
    plan = m.plan_year(year_)
    phases: dict[str, dict[str, Any]] = {}
    report = progress or (lambda phase, done, total: None)

    def timed(name: str, step: Callable[[], dict[str, Any]]) -> None:
        t0 = time.perf_counter()
        out = step()
        phases[name] = {**out, "seconds": round(time.perf_counter() - t0, 3)}

    def allocate(kind: str) -> dict[str, Any]:
        """The run and the checker's approval of its batch; proposals an earlier run left
        waiting (its approval failed, say) are approved too."""
        out = {"proposed": 0, "skipped": 0, "approved_late": 0}
        try:
            run = svc.allocate(cast.operator, _key(), year_=year_, kind=kind)
        except Conflict as err:
            if err.code not in ("ALREADY_ALLOCATED", "TRUE_UP_DONE"):
                raise
        else:
            moving = [ln for ln in run["lines"] if ln["transfer_id"]]
            if moving:
                svc.registry.approve_batch(cast.checker, _key(), run["batch_ref"])
            out.update(proposed=len(moving), skipped=len(run["skipped"]))
        for a in svc.allocations(cast.operator, year_):
            if a["kind"] == kind and a["transfer_status"] == "PENDING":
                svc.registry.approve(cast.checker, _key(), a["transfer_id"])
                out["approved_late"] += 1
        return out

    def reports() -> dict[str, Any]:
        entities = _with_evidence(svc, year_)
        open_ = _reports(svc, year_)
        with svc.db.read() as uow:
            excluded = {r.entity_id for r in fetch(uow.conn, s.EXCLUDED_IN, year=year_)}
        due = [
            e
            for e in entities
            if e in cast.enterprises
            and e not in excluded
            and open_.get(e, m.ReportStatus.DRAFT.value)
            in (m.ReportStatus.DRAFT.value, m.ReportStatus.RETURNED.value)
        ]
        for n, e in enumerate(due, start=1):
            svc.submit_report(cast.enterprises[e], _key(), entity_id=e, year_=year_)
            report("reports", n, len(due))
        return {"submitted": len(due)}

    def verification() -> dict[str, Any]:
        """The operator hands the submitted reports to the verification body as one lot, the
        body verifies each, the operator confirms the verified ones as one lot."""
        body = cast.verifier.entity_id or ""
        counts = {"assigned": 0, "verified": 0, "confirmed": 0}
        try:
            lot = svc.assign_reports(cast.operator, _key(), year_=year_, verifier_entity_id=body)
            counts["assigned"] = len(lot["assigned"])
        except Conflict as err:
            if err.code != "NOTHING_TO_ASSIGN":
                raise
        waiting = svc.verifier_queue(cast.verifier)
        for n, r in enumerate(w for w in waiting if w["year"] == year_):
            figure = verified(r) if verified else int(r["emissions"])
            svc.verify_report(
                cast.verifier,
                _key(),
                report_id=r["id"],
                verified_emissions=figure,
                findings="无重大差异 / no material misstatement",
            )
            counts["verified"] += 1
            report("verification", n + 1, len(waiting))
        try:
            done = svc.confirm_reports(cast.operator, _key(), year_=year_)
            counts["confirmed"] = len(done["confirmed"])
        except Conflict as err:
            if err.code != "NOTHING_TO_CONFIRM":
                raise
        return counts

    # what a class may still cover: borrowed units up to what was borrowed, older vintages
    # within the year's carry-over limit, the eligible vintages without a cap
    borrowed = f"CEA-{plan.borrow_from}" if plan.borrow_from else None
    rule = plan.carry_over

    def cap_of(unit_class: str) -> str | None:
        if unit_class == borrowed:
            return "borrowed"
        if rule is not None and int(unit_class[4:]) <= rule.last_old_vintage:
            return "old"
        return None

    def surrender() -> dict[str, Any]:
        standing = svc.status(cast.operator, year_)["entities"]
        done = {"surrenders": 0, "tonnes": 0}
        for n, st in enumerate(standing, start=1):
            e = st["entity_id"]
            actor = cast.enterprises.get(e)
            if actor is None or st["shortfall"] in (None, 0) or st["obligation_provisional"]:
                continue
            want = st["shortfall"] if surrenders is None else surrenders(e, st["shortfall"])
            account = svc.registry.account(actor, st["account_id"])
            caps = {"borrowed": st["borrowed_left"] or 0, "old": st["carry_over_left"]}
            eligible = [
                h
                for h in account["holdings"]
                if h["unit_class"].startswith("CEA-")
                and h["available"] > 0
                and (
                    h["unit_class"] == borrowed
                    or plan.first_vintage <= int(h["unit_class"][4:]) <= plan.last_vintage
                )
            ]
            for h in sorted(eligible, key=lambda h: str(h["unit_class"])):
                if want <= 0:
                    break
                q = min(want, int(h["available"]))
                cap = cap_of(h["unit_class"])
                if cap is not None:
                    q = min(q, int(caps[cap] or 0))
                    if q <= 0:
                        continue
                    caps[cap] = int(caps[cap] or 0) - q
                svc.surrender(
                    actor, _key(), entity_id=e, year_=year_, unit_class=h["unit_class"], quantity=q
                )
                want -= q
                done["surrenders"] += 1
                done["tonnes"] += q
            report("surrender", n, len(standing))
        return done

    timed("pre_allocation", lambda: allocate("PRE"))
    timed("reports", reports)
    timed("verification", verification)
    timed("true_up", lambda: allocate("TRUE_UP"))
    timed("surrender", surrender)
    t0 = time.perf_counter()
    status = svc.status(cast.operator, year_)
    phases["status"] = {"seconds": round(time.perf_counter() - t0, 3)}
    return {
        "year": year_,
        "phases": phases,
        "status": dict(Counter(e["status"] for e in status["entities"])),
        "compliance_rate": status["compliance_rate"],
        "non_compliant": status["non_compliant"],
    }


def simulated_cast(auth: AuthService, operator: Actor, checker: str, verifier: str) -> Cast:
    """The cast of a simulation market: the named checker and verifier, and for each covered
    entity its first enterprise user by name, each impersonated by the operator (journaled)."""
    c, u = s.covered_entities.c, users.c
    with auth.db.read() as uow:
        named = {
            r.username: r
            for r in fetch(uow.conn, sa.select(users).where(u.username.in_([checker, verifier])))
        }
    check = named.get(checker)
    if check is None or check.role != Role.OPERATOR.value or checker == operator.username:
        raise InvalidInput(
            "CAST_INVALID",
            f"the checker {checker!r} must be another operator",
            "复核人须为另一名登记机构操作员",
        )
    body = named.get(verifier)
    if body is None or body.role != Role.VERIFIER.value or body.entity_id is None:
        raise InvalidInput(
            "CAST_INVALID",
            f"the verifier {verifier!r} must be a user of a verification body",
            "核查人须为核查机构用户",
        )
    with auth.db.read() as uow:
        rows = fetch(
            uow.conn,
            sa.select(u.entity_id, u.username)
            .join(s.covered_entities, c.entity_id == u.entity_id)
            .where(u.role == Role.ENTERPRISE.value, u.active.is_(True))
            .order_by(u.entity_id, u.username),
        )
    names: dict[str, str] = {}
    for r in rows:
        names.setdefault(r.entity_id, r.username)
    return Cast(
        operator,
        auth.impersonate(operator, checker),
        auth.impersonate(operator, verifier),
        {e: auth.impersonate(operator, name) for e, name in names.items()},
    )


def _with_evidence(svc: ComplianceService, y: int) -> list[str]:
    """Entities covered in `y` with evidence for it (evidence of the year before coverage is
    the basis of an allocation, not a report)."""
    mr, c = s.monthly_records.c, s.covered_entities.c
    with svc.db.read() as uow:
        return [
            r.entity_id
            for r in fetch(
                uow.conn,
                sa.select(mr.entity_id)
                .join(s.covered_entities, c.entity_id == mr.entity_id)
                .where(mr.year == y, c.since <= y)
                .distinct()
                .order_by(mr.entity_id),
            )
        ]


def _reports(svc: ComplianceService, y: int) -> dict[str, str]:
    r = s.emission_reports.c
    with svc.db.read() as uow:
        return {
            row.entity_id: row.status
            for row in fetch(uow.conn, sa.select(r.entity_id, r.status).where(r.year == y))
        }
