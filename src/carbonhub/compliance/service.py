"""Compliance use cases: covered entities, monthly evidence, the report and its verification.

Each command is one transaction with its journal entry, exactly once per idempotency key. The
rules (accounting, the report's states, conflict of interest) are in `model`; this module loads
what they need, asks them, and stores the outcome. Registry accounts are checked through the
registry's service, never its tables.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carbonhub.compliance import files
from carbonhub.compliance import model as m
from carbonhub.compliance import store as s
from carbonhub.compliance.reference import (
    FACTORS,
    PLAN_YEARS,
    CarryOver,
    Certainty,
    Factor,
    IndustrialStrategy,
    PenaltyRule,
    PlanYear,
)
from carbonhub.core import idempotency, journal
from carbonhub.core.auth import Actor, Role, entities, require_role
from carbonhub.core.db import Database, UnitOfWork, fetch, first, insert_many, run
from carbonhub.core.errors import Conflict, DomainError, Forbidden, InvalidInput, NotFound
from carbonhub.core.fields import choice, decimal, text, year
from carbonhub.core.ids import new_id
from carbonhub.core.quantities import fen_from_yuan, yuan_from_fen
from carbonhub.core.timefmt import SHANGHAI, iso
from carbonhub.exchange.service import ExchangeService
from carbonhub.registry.model import Op
from carbonhub.registry.service import RegistryService

SECTORS = ("power", "steel", "cement", "aluminium")
_NO_PARAMS: Mapping[str, Decimal] = m.Evidence._field_defaults["params"]
FUELS = ("coal", "gas")


_KIND_OF = {k.value: k for k in m.EvidenceKind}
_FUEL_PARAMS = ("ncv", "carbon_per_gj", "element_carbon", "oxidation")  # FuelUse's order
_PENALTY_TERMS = ("shortfall", "price", "multiple", "fine")  # kept with each deduction
IMPORT_COLUMNS = frozenset({"entity", "unit", "month", "kind", "item", "quantity"})


def _int_cell(value: object) -> object:
    """A spreadsheet's month cell: 3, "3" or 3.0 are month 3; anything else stays as it is
    and is refused by the month check."""
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,2}", value.strip()):
        return int(value.strip())
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _record_row(
    entity_id: str, y: int, ev: m.Evidence, source: str, by: str, at: str
) -> dict[str, Any]:
    params = (
        orjson.dumps(
            {k: str(v) for k, v in ev.params.items()}, option=orjson.OPT_SORT_KEYS
        ).decode()
        if ev.params
        else "{}"
    )
    return {
        "entity_id": entity_id,
        "scope": ev.scope,
        "year": y,
        "month": ev.month,
        "kind": ev.kind.value,
        "item": ev.item,
        "quantity": str(ev.quantity),
        "params": params,
        "source": source,
        "created_by": by,
        "created_at": at,
    }


_REPORT_UPDATES: dict[tuple[str, ...], sa.Update] = {}


def _report_update(columns: tuple[str, ...]) -> sa.Update:
    """An update of these report columns by id, built once per set of columns (a workflow
    step changes a few), so it runs on the driver's path."""
    statement = _REPORT_UPDATES.get(columns)
    if statement is None:
        er = s.emission_reports
        statement = _REPORT_UPDATES[columns] = (
            sa.update(er)
            .where(er.c.id == sa.bindparam("rid"))
            .values(**{c: sa.bindparam(f"v_{c}") for c in columns})
        )
    return statement


def _allocation_record(
    uow: UnitOfWork,
    actor: Actor,
    entity_id: str,
    y: int,
    kind: str,
    tonnes: int,
    params: dict[str, Any],
    transfer_id: str | None = None,
) -> dict[str, Any]:
    return {
        "id": new_id(),
        "entity_id": entity_id,
        "year": y,
        "kind": kind,
        "tonnes": tonnes,
        "parameters": json.dumps(params, ensure_ascii=False, sort_keys=True),
        "transfer_id": transfer_id,
        "created_by": actor.username,
        "created_at": iso(uow.now),
    }


def _ccer(surrendered: Mapping[str, int]) -> int:
    return sum(q for unit_class, q in surrendered.items() if unit_class.startswith("CCER-"))


def _line_dict(ln: m.Line) -> dict[str, Any]:
    return {
        "source": ln.source,
        "tco2": str(ln.tco2.quantize(Decimal("0.001"))),
        "direct": ln.direct,
        "defaults": list(ln.defaults),
        "unverified": list(ln.unverified),
    }


def report_dict(row: Any, *, lines: bool = True) -> dict[str, Any]:
    """A report as the API shows it; lists leave out its lines."""
    out = {
        "id": row.id,
        "entity_id": row.entity_id,
        "year": row.year,
        "status": row.status,
        "emissions": row.emissions,
        "verifier_entity_id": row.verifier_entity_id,
        "verified_emissions": row.verified_emissions,
        "findings": row.findings,
        "version": row.version,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }
    if lines:
        out["lines"] = json.loads(row.lines)
    return out


def factor_dict(f: Factor) -> dict[str, Any]:
    return {
        "table": f.table,
        "key": f.key,
        "first": f.first,
        "last": f.last,
        "value": str(f.value),
        "unit": f.unit,
        "source": f.source,
        "certainty": f.certainty.value,
    }


class ComplianceService:
    def __init__(
        self, db: Database, registry: RegistryService, exchange: ExchangeService | None = None
    ) -> None:
        self.db = db
        self.registry = registry
        self.exchange = exchange  # for the average price a penalty is set at

    # ------------------------------------------------------------ factors

    def factor_table(self, conn: Connection) -> m.FactorTable:
        """The built-in reference rows, amended by what operators entered since, in order."""
        rows = list(FACTORS)
        for r in fetch(conn, s.FACTOR_ROWS):
            rows.append(
                Factor(
                    r.table_name,
                    r.key,
                    r.first,
                    r.last,
                    Decimal(r.value),
                    r.unit,
                    r.source,
                    Certainty(r.certainty),
                )
            )
        return m.FactorTable(rows)

    def enter_factor(
        self,
        actor: Actor,
        key: str,
        *,
        table: str,
        factor_key: str,
        first: int,
        last: int | None,
        value: str,
        unit: str,
        source: str,
        certainty: str,
    ) -> dict[str, Any]:
        """An operator enters a value from the official text (a missing benchmark, say) or
        corrects one; the later row wins for the years it covers, the earlier stays on record."""
        data = {
            "table": table,
            "key": factor_key,
            "first": first,
            "last": last,
            "value": value,
            "unit": unit,
            "source": source,
            "certainty": certainty,
        }

        def body(uow: UnitOfWork) -> dict[str, Any]:
            require_role(actor, Role.OPERATOR)
            f = Factor(
                text(table, "table", required=True, max_len=40),
                text(factor_key, "key", required=True, max_len=40),
                year(first, "first"),
                None if last is None else year(last, "last"),
                decimal(value, "value"),
                text(unit, "unit", required=True, max_len=32),
                text(source, "source", required=True, max_len=2000),
                Certainty(choice(certainty, "certainty", [c.value for c in Certainty])),
            )
            if f.last is not None and f.last < f.first:
                raise InvalidInput("YEAR_RANGE_INVALID", "last comes before first", "年份区间错误")
            uow.conn.execute(
                sa.insert(s.compliance_factors).values(
                    table_name=f.table,
                    key=f.key,
                    first=f.first,
                    last=f.last,
                    value=str(f.value),
                    unit=f.unit,
                    source=f.source,
                    certainty=f.certainty.value,
                    entered_by=actor.username,
                    entered_at=iso(uow.now),
                )
            )
            out = factor_dict(f)
            journal.append(uow, "compliance.factor_entered", actor.username, out)
            return out

        return idempotency.run(self.db, actor.username, key, "enter_factor", data, body)

    def factors(self) -> list[dict[str, Any]]:
        with self.db.read() as uow:
            table = self.factor_table(uow.conn)
        return [factor_dict(f) for f in table.rows()]

    # ------------------------------------------------------------ entities, facilities, units

    def cover_entity(
        self,
        actor: Actor,
        key: str,
        *,
        entity_id: str,
        account_id: str,
        sector: str,
        region: str,
        since: int,
    ) -> dict[str, Any]:
        data = {
            "entity_id": entity_id,
            "account_id": account_id,
            "sector": sector,
            "region": region,
            "since": since,
        }

        def body(uow: UnitOfWork) -> dict[str, Any]:
            require_role(actor, Role.OPERATOR)
            conn = uow.conn
            if not isinstance(entity_id, str) or not first(
                conn, sa.select(entities.c.id).where(entities.c.id == entity_id)
            ):
                raise NotFound("ENTITY_NOT_FOUND", f"no entity {entity_id}", "主体不存在")
            if first(conn, s.COVERED, entity_id=entity_id):
                raise Conflict("ALREADY_COVERED", "the entity is already covered", "该主体已纳入")
            self.registry.cover_holding_account(conn, text(account_id, "account_id"), entity_id)
            row = {
                "entity_id": entity_id,
                "account_id": account_id,
                "sector": choice(sector, "sector", SECTORS),
                "region": text(region, "region", required=True, max_len=32),
                "since": year(since, "since"),
                "created_at": iso(uow.now),
            }
            conn.execute(sa.insert(s.covered_entities).values(**row))
            journal.append(uow, "compliance.entity_covered", actor.username, row)
            return row

        return idempotency.run(self.db, actor.username, key, "cover_entity", data, body)

    def _covered(self, conn: Connection, entity_id: str) -> Any:
        row = first(conn, s.COVERED, entity_id=entity_id) if isinstance(entity_id, str) else None
        if row is None:
            raise NotFound(
                "ENTITY_NOT_COVERED", f"entity {entity_id} is not covered", "该主体未纳入管控"
            )
        return row

    @staticmethod
    def _own_or_operator(actor: Actor, entity_id: str) -> None:
        if actor.role is Role.OPERATOR:
            return
        require_role(actor, Role.ENTERPRISE)
        if actor.entity_id != entity_id:
            raise Forbidden(
                "NOT_YOUR_ENTITY", "an enterprise acts for itself only", "只能操作本主体"
            )

    def add_facility(self, actor: Actor, key: str, *, entity_id: str, name: str) -> dict[str, Any]:
        data = {"entity_id": entity_id, "name": name}

        def body(uow: UnitOfWork) -> dict[str, Any]:
            self._own_or_operator(actor, entity_id)
            covered = self._covered(uow.conn, entity_id)
            row = {
                "id": new_id(),
                "entity_id": entity_id,
                "name": text(name, "name", required=True),
                "sector": covered.sector,
                "created_at": iso(uow.now),
            }
            uow.conn.execute(sa.insert(s.facilities).values(**row))
            journal.append(uow, "compliance.facility_added", actor.username, row)
            return row

        return idempotency.run(self.db, actor.username, key, "add_facility", data, body)

    def add_unit(
        self,
        actor: Actor,
        key: str,
        *,
        facility_id: str,
        code: str,
        category: str,
        capacity_mw: str,
        cooling: str,
        fuel: str,
        heat_supply: bool = False,
    ) -> dict[str, Any]:
        """A generating unit with what the allocation rules read: category, capacity, cooling,
        fuel and whether it supplies heat. Gas is category IV and category IV is gas."""
        data = {
            "facility_id": facility_id,
            "code": code,
            "category": category,
            "capacity_mw": capacity_mw,
            "cooling": cooling,
            "fuel": fuel,
            "heat_supply": heat_supply,
        }

        def body(uow: UnitOfWork) -> dict[str, Any]:
            conn = uow.conn
            fac = first(
                conn,
                sa.select(s.facilities).where(
                    s.facilities.c.id == text(facility_id, "facility_id")
                ),
            )
            if fac is None:
                raise NotFound("FACILITY_NOT_FOUND", f"no facility {facility_id}", "设施不存在")
            self._own_or_operator(actor, fac.entity_id)
            if fac.sector != "power":
                raise Conflict(
                    "NOT_A_POWER_FACILITY",
                    "generating units belong to power-sector facilities",
                    "机组只能属于发电行业设施",
                )
            cat = m.UnitCategory(choice(category, "category", [c.value for c in m.UnitCategory]))
            fuel_ = choice(fuel, "fuel", FUELS)
            if (cat is m.UnitCategory.GAS) != (fuel_ == "gas"):
                raise InvalidInput(
                    "CATEGORY_FUEL_MISMATCH",
                    "category IV is the gas category, and gas units are category IV",
                    "燃气机组对应第 IV 类别",
                )
            capacity = decimal(capacity_mw, "capacity_mw")
            if not Decimal(0) < capacity <= Decimal(2000):
                raise InvalidInput(
                    "CAPACITY_OUT_OF_RANGE",
                    "capacity must be above 0 and at most 2,000 MW (the largest units are 1,350)",
                    "装机容量应在 0–2000 MW 之间",
                )
            if not isinstance(heat_supply, bool):
                raise InvalidInput("FIELD_INVALID", "heat_supply is true or false", "供热标志错误")
            row = {
                "id": new_id(),
                "facility_id": facility_id,
                "code": text(code, "code", required=True, max_len=40),
                "category": cat.value,
                "capacity_mw": str(capacity),
                "cooling": choice(cooling, "cooling", [c.value for c in m.Cooling]),
                "fuel": fuel_,
                "heat_supply": heat_supply,
                "created_at": iso(uow.now),
            }
            if first(
                conn,
                sa.select(s.generating_units.c.id).where(
                    s.generating_units.c.facility_id == facility_id,
                    s.generating_units.c.code == row["code"],
                ),
            ):
                raise Conflict("UNIT_EXISTS", f"unit {row['code']} exists here", "机组编号已存在")
            conn.execute(sa.insert(s.generating_units).values(**row))
            journal.append(uow, "compliance.unit_added", actor.username, row)
            return row

        return idempotency.run(self.db, actor.username, key, "add_unit", data, body)

    def _units_of(self, conn: Connection, entity_id: str) -> dict[str, Any]:
        return {r.id: r for r in fetch(conn, s.UNITS_OF_ENTITY, entity_id=entity_id)}

    # ------------------------------------------------------------ monthly evidence

    def record_months(
        self, actor: Actor, key: str, *, entity_id: str, year_: int, records: Sequence[Any]
    ) -> dict[str, Any]:
        """Monthly evidence lines, all or none. A line already recorded for the same unit,
        month, kind and item is refused (correct it by returning the report, then replacing)."""
        data = {"entity_id": entity_id, "year": year_, "records": records}

        def body(uow: UnitOfWork) -> dict[str, Any]:
            self._own_or_operator(actor, entity_id)
            conn = uow.conn
            covered = self._covered(conn, entity_id)
            y = year(year_)
            m.check_evidence_year(y, covered.since)
            report = self._report_row(conn, entity_id, y)
            if report is not None and m.ReportStatus(report.status) not in m.EDITABLE:
                raise Conflict(
                    "REPORT_LOCKED",
                    f"the {y} report is {report.status}: its evidence is fixed",
                    f"{y} 年度报告状态为 {report.status}, 不能修改数据",
                )
            if not isinstance(records, (list, tuple)) or not records:
                raise InvalidInput("RECORDS_EMPTY", "records: a non-empty list", "记录为空")
            units = self._units_of(conn, entity_id)
            factors = self.factor_table(conn)
            fuels_checked: set[tuple[Any, ...]] = set()
            rows = []
            seen: set[tuple[str, int, str, str]] = set()
            for n, rec in enumerate(records, start=1):
                ev = self._evidence(rec, n, y, units, factors, fuels_checked)
                line = (ev.scope, ev.month, ev.kind.value, ev.item)
                if line in seen:
                    raise Conflict(
                        "RECORD_DUPLICATE", f"row {n}: the same line twice", f"第 {n} 行: 重复记录"
                    )
                seen.add(line)
                rows.append(_record_row(entity_id, y, ev, "manual", actor.username, iso(uow.now)))
            existing = {
                tuple(r)[1:]
                for r in fetch(conn, s.LINES_OF_ENTITY_YEAR, year=y, entity_id=entity_id)
            }
            clash = sorted(seen & existing)
            if clash:
                _scope, mo, kind, item = clash[0]
                raise Conflict(
                    "RECORD_EXISTS",
                    f"{kind} {item} for month {mo} is already recorded",
                    f"{mo} 月 {kind} {item} 已有记录",
                )
            insert_many(conn, s.monthly_records, rows)
            journal.append(
                uow,
                "compliance.evidence_recorded",
                actor.username,
                {"entity_id": entity_id, "year": y, "lines": len(rows)},
            )
            return {"entity_id": entity_id, "year": y, "recorded": len(rows)}

        return idempotency.run(self.db, actor.username, key, "record_months", data, body)

    def import_evidence(
        self,
        actor: Actor,
        key: str,
        *,
        year_: int,
        rows: Sequence[Mapping[str, Any]],
        progress: Callable[[int, int], None] | None = None,
    ) -> dict[str, Any]:
        """Monthly evidence of many entities from a file (CSV or Excel, read by the adapter):
        good rows are kept and bad ones rejected, each with its row number and reason.

        A row: entity (id or unified social credit code), unit (a generating unit's code, or
        empty for the entity), month, kind, item, quantity, and the kind's parameters as columns
        (ncv, element_carbon, …); empty cells are absent values. An enterprise imports only its
        own rows."""
        if not isinstance(rows, (list, tuple)):
            raise InvalidInput("RECORDS_EMPTY", "rows: a list", "记录为空")
        try:
            digest = hashlib.sha256(
                orjson.dumps(list(rows), option=orjson.OPT_SORT_KEYS)
            ).hexdigest()
        except TypeError as exc:
            raise InvalidInput(
                "RECORD_INVALID",
                "rows hold text, numbers and objects of text keys only",
                "记录格式错误",
            ) from exc
        data = {"year": year_, "rows_sha256": digest, "rows": len(rows)}

        def body(uow: UnitOfWork) -> dict[str, Any]:
            if actor.role is not Role.OPERATOR:
                require_role(actor, Role.ENTERPRISE)
            conn = uow.conn
            y = year(year_)
            m.plan_year(y)
            factors = self.factor_table(conn)
            fuels_checked: set[tuple[Any, ...]] = set()
            covered = {r.entity_id: r for r in fetch(conn, sa.select(s.covered_entities))}
            by_code = (
                {
                    r.credit_code: r.id
                    for r in fetch(
                        conn,
                        sa.select(entities.c.id, entities.c.credit_code).where(
                            entities.c.id.in_(list(covered))
                        ),
                    )
                }
                if covered
                else {}
            )
            units: dict[str, dict[str, Any]] = {}
            unit_code: dict[tuple[str, str], str] = {}
            for u in fetch(
                conn,
                sa.select(s.generating_units, s.facilities.c.entity_id).join(
                    s.facilities, s.facilities.c.id == s.generating_units.c.facility_id
                ),
            ):
                units.setdefault(u.entity_id, {})[u.id] = u
                unit_code[(u.entity_id, u.code)] = u.id
            locked = {
                r.entity_id
                for r in fetch(
                    conn,
                    sa.select(s.emission_reports.c.entity_id).where(
                        s.emission_reports.c.year == y,
                        s.emission_reports.c.status.notin_([st.value for st in m.EDITABLE]),
                    ),
                )
            }
            seen = {tuple(r) for r in fetch(conn, s.LINES_OF_YEAR, year=y)}
            at = iso(uow.now)
            accepted: list[dict[str, Any]] = []
            rejected: list[dict[str, Any]] = []
            for n, raw in enumerate(rows, start=1):
                try:
                    if not isinstance(raw, Mapping):
                        raise InvalidInput(
                            "RECORD_INVALID", "each row is an object", "记录格式错误"
                        )
                    ref = str(raw.get("entity") or "").strip()
                    eid = ref if ref in covered else by_code.get(ref)
                    mine = actor.entity_id is not None and actor.entity_id in (eid, ref)
                    if actor.role is not Role.OPERATOR and not mine:
                        # one answer for every other entity: whether it is covered stays private
                        raise Forbidden(
                            "NOT_YOUR_ENTITY",
                            "an enterprise imports its own rows",
                            "只能导入本主体数据",
                        )
                    if eid is None:
                        raise NotFound(
                            "ENTITY_NOT_COVERED",
                            f"entity {ref!r} is not covered",
                            "该主体未纳入管控",
                        )
                    m.check_evidence_year(y, covered[eid].since)
                    if eid in locked:
                        raise Conflict(
                            "REPORT_LOCKED", f"the {y} report is not editable", "报告已锁定"
                        )
                    code = str(raw.get("unit") or "").strip()
                    scope = unit_code.get((eid, code), "") if code else ""
                    if code and not scope:
                        raise NotFound(
                            "UNIT_NOT_FOUND", f"no generating unit {code!r}", "机组不存在"
                        )
                    params = {
                        k: v
                        for k, v in raw.items()
                        if k not in IMPORT_COLUMNS and v not in (None, "")
                    }
                    rec = {
                        "kind": raw.get("kind"),
                        "month": _int_cell(raw.get("month")),
                        "item": raw.get("item") or "",
                        "unit_id": scope,
                        "quantity": raw.get("quantity"),
                        "params": params,
                    }
                    ev = self._evidence(
                        rec, n, y, units.get(eid, {}), factors, fuels_checked, prefix=False
                    )
                    line = (eid, ev.scope, ev.month, ev.kind.value, ev.item)
                    if line in seen:
                        raise Conflict(
                            "RECORD_EXISTS",
                            "this line is recorded already (or twice in the file)",
                            "重复记录",
                        )
                    seen.add(line)
                    accepted.append(_record_row(eid, y, ev, "import", actor.username, at))
                except DomainError as err:
                    rejected.append(
                        {
                            "row": n,
                            "code": err.code,
                            "message": err.message,
                            "message_zh": err.message_zh,
                        }
                    )
                if progress is not None and n % 10_000 == 0:
                    progress(n, len(rows))
            for chunk in range(0, len(accepted), 50_000):
                insert_many(conn, s.monthly_records, accepted[chunk : chunk + 50_000])
            if progress is not None:
                progress(len(rows), len(rows))
            out = {"year": y, "rows": len(rows), "accepted": len(accepted), "rejected": rejected}
            journal.append(
                uow,
                "compliance.evidence_imported",
                actor.username,
                {
                    "year": y,
                    "rows": len(rows),
                    "accepted": len(accepted),
                    "rejected": len(rejected),
                    "sha256": digest,
                },
            )
            return out

        return idempotency.run(self.db, actor.username, key, "import_evidence", data, body)

    def import_evidence_file(
        self,
        actor: Actor,
        key: str,
        *,
        year_: int,
        data: bytes,
        progress: Callable[[int, int], None] | None = None,
    ) -> dict[str, Any]:
        """`import_evidence` of a CSV (UTF-8 or GBK) or Excel file: a file of the wrong shape
        is refused whole; otherwise each rejection names its line in the file."""
        if actor.role is not Role.OPERATOR:  # who may import, before the file is read
            require_role(actor, Role.ENTERPRISE)
        f = files.read_evidence(data)
        out = self.import_evidence(actor, key, year_=year_, rows=f.rows, progress=progress)
        for r in out["rejected"]:
            r["line"] = f.lines[r.pop("row") - 1]
        out["rejected"] = sorted(out["rejected"] + f.rejected, key=lambda r: int(r["line"]))
        out["rows"] += len(f.rejected)
        out["encoding"] = f.encoding
        return out

    def _evidence(
        self,
        rec: Any,
        n: int,
        y: int,
        units: Mapping[str, Any],
        factors: m.FactorTable,
        fuels_checked: set[tuple[Any, ...]],
        *,
        prefix: bool = True,
    ) -> m.Evidence:
        try:
            if not isinstance(rec, Mapping):
                raise InvalidInput("RECORD_INVALID", "each record is an object", "记录格式错误")
            kind = _KIND_OF[choice(rec.get("kind"), "kind", _KIND_OF.keys())]
            month = rec.get("month")
            if isinstance(month, bool) or not isinstance(month, int):
                raise InvalidInput("MONTH_INVALID", "month must be 1–12", "月份应为 1–12")
            scope = text(rec.get("unit_id"), "unit_id", max_len=36)
            if scope and scope not in units:
                raise NotFound(
                    "UNIT_NOT_FOUND", f"no generating unit {scope} of this entity", "机组不存在"
                )
            raw = rec.get("params") or {}
            if not isinstance(raw, Mapping):
                raise InvalidInput("RECORD_INVALID", "params is an object", "参数格式错误")
            ev = m.Evidence(
                kind,
                month,
                decimal(rec.get("quantity"), "quantity"),
                text(rec.get("item"), "item", max_len=40),
                scope,
                {str(k): decimal(v, str(k)) for k, v in raw.items()},
            )
            capacity = Decimal(units[scope].capacity_mw) if scope else None
            m.check_evidence(ev, y, capacity)
            if kind is m.EvidenceKind.FUEL:  # a fuel's parameters are checked when recorded
                values = tuple(ev.params.get(p) for p in _FUEL_PARAMS)
                if (ev.item, values) not in fuels_checked:  # the same fuel: checked once
                    m.combustion(m.FuelUse(ev.item, Decimal(0), *values), y, factors)
                    fuels_checked.add((ev.item, values))
            return ev
        except (InvalidInput, NotFound, Conflict) as err:
            if prefix:
                err.message = f"row {n}: {err.message}"
                err.message_zh = f"第 {n} 行: {err.message_zh}"
            raise

    def _records(
        self, conn: Connection, entity_id: str, y: int, *, outputs_only: bool = False
    ) -> list[m.Evidence]:
        """The year's evidence; `outputs_only`: just generation, supply and heat."""
        query = s.OUTPUT_RECORDS_OF_YEAR if outputs_only else s.RECORDS_OF_YEAR
        return [
            m.Evidence(
                _KIND_OF[r.kind],
                r.month,
                Decimal(r.quantity),
                r.item,
                r.scope,
                {k: Decimal(v) for k, v in orjson.loads(r.params).items()}
                if r.params != "{}"
                else _NO_PARAMS,
            )
            for r in fetch(conn, query, entity_id=entity_id, year=y)
        ]

    # ------------------------------------------------------------ the report

    def _report_row(self, conn: Connection, entity_id: str, y: int) -> Any:
        return first(conn, s.REPORT_OF_YEAR, entity_id=entity_id, year=y)

    def _report_by_id(self, conn: Connection, report_id: str) -> Any:
        row = first(conn, s.REPORT_BY_ID, id=report_id) if isinstance(report_id, str) else None
        if row is None:
            raise NotFound("REPORT_NOT_FOUND", f"no report {report_id}", "报告不存在")
        return row

    def _move(
        self,
        uow: UnitOfWork,
        actor: Actor,
        report: Any,
        action: m.ReportAction,
        note: str,
        answer: bool = True,
        **changes: Any,
    ) -> dict[str, Any]:
        """One step of the workflow: the new state, its timeline event and journal entry;
        `answer`: the report as it is now (a batch step does without)."""
        current = m.ReportStatus(report.status)
        nxt = m.next_status(current, action)
        at = iso(uow.now)
        values = {"status": nxt.value, "updated_at": at, **changes}
        bound = {f"v_{k}": v for k, v in values.items()}
        run(uow.conn, _report_update(tuple(values)), rid=report.id, **bound)
        event = {
            "report_id": report.id,
            "from_status": current.value,
            "to_status": nxt.value,
            "actor": actor.username,
            "note": note,
            "at": at,
        }
        insert_many(uow.conn, s.report_events, [event])
        journal.append(
            uow,
            f"compliance.report_{action.value}",
            actor.username,
            {
                "report_id": report.id,
                "entity_id": report.entity_id,
                "year": report.year,
                "from": current.value,
                "to": nxt.value,
                **{k: v for k, v in changes.items() if k != "lines"},
            },
        )
        return report_dict(self._report_by_id(uow.conn, report.id)) if answer else {}

    def submit_report(
        self, actor: Actor, key: str, *, entity_id: str, year_: int
    ) -> dict[str, Any]:
        """Works out the year's emissions from the monthly evidence and submits them."""
        data = {"entity_id": entity_id, "year": year_}

        def body(uow: UnitOfWork) -> dict[str, Any]:
            self._own_or_operator(actor, entity_id)
            conn = uow.conn
            covered = self._covered(conn, entity_id)
            sector = covered.sector
            y = year(year_)
            plan = m.plan_year(y)
            if y < covered.since:
                raise Conflict(
                    "YEAR_NOT_COVERED",
                    f"the entity reports from {covered.since}, its first covered year",
                    f"该主体自 {covered.since} 年起报告",
                )
            records = self._records(conn, entity_id, y)
            if not records:
                raise Conflict("NO_EVIDENCE", f"nothing recorded for {y}", f"{y} 年度尚无月度数据")
            lines = m.evidence_lines(records, y, self.factor_table(conn))
            indirect = plan.count_indirect and sector == "power"
            emissions = m.total(lines, count_indirect=indirect)
            report = self._report_row(conn, entity_id, y)
            if report is None:
                at = iso(uow.now)
                rid = new_id()
                draft = {
                    "id": rid,
                    "entity_id": entity_id,
                    "year": y,
                    "status": m.ReportStatus.DRAFT.value,
                    "emissions": None,
                    "lines": "[]",
                    "verifier_entity_id": None,
                    "verified_emissions": None,
                    "findings": "",
                    "version": 0,
                    "created_at": at,
                    "updated_at": at,
                }
                insert_many(conn, s.emission_reports, [draft])
                report = self._report_by_id(conn, rid)
            return self._move(
                uow,
                actor,
                report,
                m.ReportAction.SUBMIT,
                "",
                emissions=emissions,
                lines=json.dumps([_line_dict(ln) for ln in lines]),
                version=report.version + 1,
                verifier_entity_id=None,  # a resubmitted report is assigned afresh
            )

        return idempotency.run(self.db, actor.username, key, "submit_report", data, body)

    def assign_verifier(
        self, actor: Actor, key: str, *, report_id: str, verifier_entity_id: str
    ) -> dict[str, Any]:
        data = {"report_id": report_id, "verifier_entity_id": verifier_entity_id}

        def body(uow: UnitOfWork) -> dict[str, Any]:
            require_role(actor, Role.OPERATOR)
            report = self._report_by_id(uow.conn, report_id)
            ver = self._entity(uow.conn, verifier_entity_id)
            m.check_verifier(ver.id, ver.kind, report.entity_id)
            return self._move(
                uow,
                actor,
                report,
                m.ReportAction.ASSIGN,
                ver.name,
                verifier_entity_id=ver.id,
            )

        return idempotency.run(self.db, actor.username, key, "assign_verifier", data, body)

    @staticmethod
    def _entity(conn: Connection, entity_id: object) -> Any:
        row = first(
            conn, sa.select(entities).where(entities.c.id == text(entity_id, "verifier_entity_id"))
        )
        if row is None:
            raise NotFound("ENTITY_NOT_FOUND", f"no entity {entity_id}", "主体不存在")
        return row

    def _batch(
        self, conn: Connection, y: int, status: m.ReportStatus, report_ids: Sequence[str] | None
    ) -> list[Any]:
        """The year's reports in `status`, or exactly the ones named (each must be)."""
        r = s.emission_reports.c
        query = sa.select(s.emission_reports).where(r.year == y).order_by(r.entity_id)
        if report_ids is None:
            return fetch(conn, query.where(r.status == status.value))
        if not isinstance(report_ids, (list, tuple)) or not 0 < len(report_ids) <= 10_000:
            raise InvalidInput("REPORTS_INVALID", "report_ids: 1 to 10,000 ids", "报告列表错误")
        wanted = [text(i, "report_id", required=True, max_len=36) for i in report_ids]
        if len(set(wanted)) != len(wanted):
            raise InvalidInput("REPORTS_INVALID", "a report named twice", "报告重复")
        found = {row.id: row for row in fetch(conn, query.where(r.id.in_(wanted)))}
        for i in wanted:
            row = found.get(i)
            if row is None:
                raise NotFound("REPORT_NOT_FOUND", f"no {y} report {i}", "报告不存在")
            if row.status != status.value:
                raise Conflict(
                    "REPORT_STATE",
                    f"report {i} is {row.status}, not {status.value}",
                    f"报告 {i} 状态为 {row.status}",
                )
        return [found[i] for i in wanted]

    def assign_reports(
        self,
        actor: Actor,
        key: str,
        *,
        year_: int,
        verifier_entity_id: str,
        report_ids: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """One verification body for a lot of the year's submitted reports (all of them, or the
        ones named), as an authority hands out its verification lots: all or none, the conflict
        of interest checked for each."""
        data = {"year": year_, "verifier": verifier_entity_id, "reports": report_ids}

        def body(uow: UnitOfWork) -> dict[str, Any]:
            require_role(actor, Role.OPERATOR)
            y = year(year_)
            ver = self._entity(uow.conn, verifier_entity_id)
            lot = self._batch(uow.conn, y, m.ReportStatus.SUBMITTED, report_ids)
            if not lot:
                raise Conflict("NOTHING_TO_ASSIGN", f"no submitted {y} report", "无待指派报告")
            for report in lot:
                m.check_verifier(ver.id, ver.kind, report.entity_id)
                self._move(
                    uow,
                    actor,
                    report,
                    m.ReportAction.ASSIGN,
                    ver.name,
                    answer=False,
                    verifier_entity_id=ver.id,
                )
            return {"year": y, "verifier_entity_id": ver.id, "assigned": [r.id for r in lot]}

        return idempotency.run(self.db, actor.username, key, "assign_reports", data, body)

    def confirm_reports(
        self, actor: Actor, key: str, *, year_: int, report_ids: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """Confirm the year's verified reports (all of them, or the ones named), all or none."""
        data = {"year": year_, "reports": report_ids}

        def body(uow: UnitOfWork) -> dict[str, Any]:
            require_role(actor, Role.OPERATOR)
            y = year(year_)
            lot = self._batch(uow.conn, y, m.ReportStatus.VERIFIED, report_ids)
            if not lot:
                raise Conflict("NOTHING_TO_CONFIRM", f"no verified {y} report", "无待确认报告")
            for report in lot:
                self._move(uow, actor, report, m.ReportAction.CONFIRM, "", answer=False)
            return {"year": y, "confirmed": [r.id for r in lot]}

        return idempotency.run(self.db, actor.username, key, "confirm_reports", data, body)

    def _assigned(self, actor: Actor, report: Any) -> None:
        require_role(actor, Role.VERIFIER)
        if actor.entity_id is None or actor.entity_id != report.verifier_entity_id:
            raise Forbidden(
                "NOT_ASSIGNED", "only the assigned verifier acts on this report", "非指派核查机构"
            )

    def verify_report(
        self,
        actor: Actor,
        key: str,
        *,
        report_id: str,
        verified_emissions: int,
        findings: str,
    ) -> dict[str, Any]:
        data = {"report_id": report_id, "verified": verified_emissions, "findings": findings}

        def body(uow: UnitOfWork) -> dict[str, Any]:
            report = self._report_by_id(uow.conn, report_id)
            self._assigned(actor, report)
            note = text(findings, "findings", required=True, max_len=5000)
            if (
                isinstance(verified_emissions, bool)
                or not isinstance(verified_emissions, int)
                or not 0 <= verified_emissions <= 10**10
            ):
                raise InvalidInput(
                    "EMISSIONS_INVALID",
                    "verified_emissions: whole tonnes, 0 to 10 billion",
                    "核查排放量须为整数吨",
                )
            return self._move(
                uow,
                actor,
                report,
                m.ReportAction.VERIFY,
                note,
                verified_emissions=verified_emissions,
                findings=note,
            )

        return idempotency.run(self.db, actor.username, key, "verify_report", data, body)

    def return_report(
        self, actor: Actor, key: str, *, report_id: str, reasons: str
    ) -> dict[str, Any]:
        """Back to the entity with reasons, by the assigned verifier or the operator."""
        data = {"report_id": report_id, "reasons": reasons}

        def body(uow: UnitOfWork) -> dict[str, Any]:
            report = self._report_by_id(uow.conn, report_id)
            if actor.role is not Role.OPERATOR:
                self._assigned(actor, report)
            note = text(reasons, "reasons", required=True, max_len=5000)
            return self._move(
                uow, actor, report, m.ReportAction.RETURN, note, verified_emissions=None
            )

        return idempotency.run(self.db, actor.username, key, "return_report", data, body)

    def confirm_report(self, actor: Actor, key: str, *, report_id: str) -> dict[str, Any]:
        data = {"report_id": report_id}

        def body(uow: UnitOfWork) -> dict[str, Any]:
            require_role(actor, Role.OPERATOR)
            report = self._report_by_id(uow.conn, report_id)
            return self._move(uow, actor, report, m.ReportAction.CONFIRM, "")

        return idempotency.run(self.db, actor.username, key, "confirm_report", data, body)

    # ------------------------------------------------------------ reads

    def _may_read(self, actor: Actor, report: Any) -> None:
        if actor.role is Role.OPERATOR:
            return
        if actor.role is Role.ENTERPRISE and actor.entity_id == report.entity_id:
            return
        if (
            actor.role is Role.VERIFIER
            and actor.entity_id is not None
            and actor.entity_id == report.verifier_entity_id
        ):
            return
        raise Forbidden("NOT_YOUR_REPORT", "not your report", "无权查看该报告")

    def report(self, actor: Actor, report_id: str) -> dict[str, Any]:
        with self.db.read() as uow:
            row = self._report_by_id(uow.conn, report_id)
            self._may_read(actor, row)
            out = report_dict(row)
            out["timeline"] = [
                {
                    "from": e.from_status,
                    "to": e.to_status,
                    "actor": e.actor,
                    "note": e.note,
                    "at": e.at,
                }
                for e in fetch(
                    uow.conn,
                    sa.select(s.report_events)
                    .where(s.report_events.c.report_id == report_id)
                    .order_by(s.report_events.c.id),
                )
            ]
            return out

    def verifier_queue(self, actor: Actor) -> list[dict[str, Any]]:
        """The reports assigned to the actor's verification body and waiting for it."""
        require_role(actor, Role.VERIFIER)
        if actor.entity_id is None:
            return []
        with self.db.read() as uow:
            rows = fetch(
                uow.conn,
                sa.select(s.emission_reports)
                .where(
                    s.emission_reports.c.verifier_entity_id == actor.entity_id,
                    s.emission_reports.c.status == m.ReportStatus.UNDER_VERIFICATION.value,
                )
                .order_by(s.emission_reports.c.updated_at, s.emission_reports.c.id),
            )
        return [report_dict(r, lines=False) for r in rows]

    def reports(self, actor: Actor, year_: int, status: str | None = None) -> list[dict[str, Any]]:
        """The year's reports the actor may read: all for an operator, its own for an
        enterprise, those assigned to it for a verification body; without their lines."""
        y = year(year_)
        r = s.emission_reports.c
        query = sa.select(s.emission_reports).where(r.year == y).order_by(r.entity_id)
        if status is not None:
            query = query.where(
                r.status == choice(status, "status", [x.value for x in m.ReportStatus])
            )
        if actor.role in (Role.ENTERPRISE, Role.VERIFIER) and actor.entity_id is None:
            return []  # an enterprise or a verifier outside any entity has nothing here
        if actor.role is Role.ENTERPRISE:
            query = query.where(r.entity_id == actor.entity_id)
        elif actor.role is Role.VERIFIER:
            query = query.where(r.verifier_entity_id == actor.entity_id)
        else:
            require_role(actor, Role.OPERATOR)
        with self.db.read() as uow:
            rows = fetch(uow.conn, query)
        return [report_dict(row, lines=False) for row in rows]

    def active_years(self) -> list[int]:
        """Years with a report or an allocation, newest first: the years worth showing."""
        r, a = s.emission_reports.c, s.compliance_allocations.c
        with self.db.read() as uow:
            found = {
                int(row[0])
                for q in (sa.select(r.year).distinct(), sa.select(a.year).distinct())
                for row in uow.conn.execute(q)
            }
        return sorted(found, reverse=True)

    def covered_entities(self, actor: Actor) -> list[dict[str, Any]]:
        """Covered entities with their names: every one for an operator, its own for an
        enterprise."""
        c = s.covered_entities.c
        query = (
            sa.select(s.covered_entities, entities.c.name, entities.c.credit_code)
            .join(entities, entities.c.id == c.entity_id)
            .order_by(c.sector, entities.c.credit_code)
        )
        if actor.role is not Role.OPERATOR:
            require_role(actor, Role.ENTERPRISE)
            query = query.where(c.entity_id == actor.entity_id)
        with self.db.read() as uow:
            return [r._asdict() for r in fetch(uow.conn, query)]

    def covered_entity(self, actor: Actor, entity_id: str) -> dict[str, Any]:
        """One covered entity: its facilities and generating units, and its reports."""
        self._own_or_operator(actor, entity_id)
        with self.db.read() as uow:
            conn = uow.conn
            out: dict[str, Any] = self._covered(conn, entity_id)._asdict()
            f = s.facilities.c
            out["facilities"] = [
                r._asdict()
                for r in fetch(
                    conn,
                    sa.select(s.facilities).where(f.entity_id == entity_id).order_by(f.name),
                )
            ]
            out["units"] = [
                u._asdict()
                for u in sorted(self._units_of(conn, entity_id).values(), key=lambda u: u.code)
            ]
            r = s.emission_reports.c
            out["reports"] = [
                row._asdict()
                for row in fetch(
                    conn,
                    sa.select(r.id, r.year, r.status, r.emissions, r.verified_emissions)
                    .where(r.entity_id == entity_id)
                    .order_by(r.year),
                )
            ]
        return out

    def evidence(self, actor: Actor, entity_id: str, year_: int) -> list[dict[str, Any]]:
        """The monthly evidence lines recorded for an entity and year, in month order."""
        self._own_or_operator(actor, entity_id)
        y = year(year_)
        mr = s.monthly_records.c
        with self.db.read() as uow:
            self._covered(uow.conn, entity_id)
            rows = fetch(
                uow.conn,
                sa.select(s.monthly_records)
                .where(mr.entity_id == entity_id, mr.year == y)
                .order_by(mr.month, mr.kind, mr.scope, mr.item, mr.id),
            )
        return [
            {
                "month": r.month,
                "kind": r.kind,
                "item": r.item,
                "unit_id": r.scope or None,
                "quantity": r.quantity,
                "params": json.loads(r.params),
                "source": r.source,
                "created_by": r.created_by,
                "created_at": r.created_at,
            }
            for r in rows
        ]

    def allocations(self, actor: Actor, year_: int) -> list[dict[str, Any]]:
        """The year's allocation records (PRE, FINAL, TRUE_UP, DEDUCTION) with their
        parameters and the registry proposal's state; an enterprise sees its own."""
        y = year(year_)
        a = s.compliance_allocations.c
        query = sa.select(s.compliance_allocations).where(a.year == y).order_by(a.entity_id, a.kind)
        if actor.role is not Role.OPERATOR:
            require_role(actor, Role.ENTERPRISE)
            query = query.where(a.entity_id == actor.entity_id)
        with self.db.read() as uow:
            rows = fetch(uow.conn, query)
            states = self.registry.transfer_statuses(
                uow.conn, [r.transfer_id for r in rows if r.transfer_id]
            )
        return [
            {
                "entity_id": r.entity_id,
                "year": r.year,
                "kind": r.kind,
                "tonnes": r.tonnes,
                "parameters": json.loads(r.parameters),
                "transfer_id": r.transfer_id,
                "transfer_status": states.get(r.transfer_id) if r.transfer_id else None,
                "created_by": r.created_by,
                "created_at": r.created_at,
            }
            for r in rows
        ]

    # ------------------------------------------------------------ allocation

    def _verified(self, conn: Connection, entity_id: str, y: int) -> int | None:
        """Verified emissions once the operator confirmed the report; None before."""
        r = self._report_row(conn, entity_id, y)
        if r is None or r.status != m.ReportStatus.CONFIRMED.value:
            return None
        return int(r.verified_emissions)

    def _power_parts(
        self,
        conn: Connection,
        entity_id: str,
        plan: PlanYear,
        basis_year: int,
        factors: m.FactorTable,
    ) -> list[tuple[str, str, m.Allocation]]:
        """Each generating unit's allocation for `plan` on `basis_year`'s output."""
        records = self._records(conn, entity_id, basis_year, outputs_only=True)
        out = []
        for unit in sorted(self._units_of(conn, entity_id).values(), key=lambda u: u.code):
            output = m.unit_output(records, unit.id, Decimal(unit.capacity_mw))
            a = m.power_allocation(
                m.UnitCategory(unit.category), m.Cooling(unit.cooling), output, plan, factors
            )
            out.append((unit.code, unit.fuel, a))
        return out

    def entitlement(
        self, conn: Connection, covered: Any, y: int, kind: str, factors: m.FactorTable
    ) -> tuple[int, dict[str, Any]]:
        """What an entity is allocated for year `y`: PRE (the plan's share of last year's
        basis) or FINAL (on the year's own verified figures), less any deduction owed."""
        plan = m.plan_year(y)
        entity_id = covered.entity_id
        if covered.sector == "power":
            basis_year = y - 1 if kind == "PRE" else y
            parts = self._power_parts(conn, entity_id, plan, basis_year, factors)
            if not parts:
                raise Conflict("NO_UNITS", f"entity {entity_id} has no generating units", "无机组")
            full = sum(a.tonnes for _, _, a in parts)
            params: dict[str, Any] = {
                "basis_year": basis_year,
                "units": {
                    code: {"tonnes": a.tonnes, "fuel": fuel, **a.parameters}
                    for code, fuel, a in parts
                },
                "unverified": sorted({u for _, _, a in parts for u in a.unverified}),
            }
        else:
            if kind == "PRE":
                if plan.industrial is not IndustrialStrategy.INTENSITY:
                    raise Conflict(
                        "NO_PRE_ALLOCATION",
                        f"{covered.sector} gets no pre-allocation in {y}",
                        f"{y} 年 {covered.sector} 行业无预分配",
                    )
                last = self._verified(conn, entity_id, y - 1)
                if last is None:
                    raise Conflict(
                        "NOT_VERIFIED",
                        f"entity {entity_id} has no confirmed {y - 1} emissions",
                        f"{y - 1} 年度排放量未确认",
                    )
                full, params = last, {"basis_year": y - 1, "verified": last}
            else:
                output = sum(
                    (
                        ev.quantity
                        for ev in self._records(conn, entity_id, y)
                        if ev.kind is m.EvidenceKind.OUTPUT
                    ),
                    Decimal(0),
                )
                a = m.industrial_allocation(
                    covered.sector,
                    plan,
                    factors,
                    verified_emissions=self._verified(conn, entity_id, y),
                    output_t=output,
                )
                full, params = a.tonnes, {**a.parameters, "unverified": list(a.unverified)}
        if kind == "PRE":
            return m.pre_allocation(full, plan), {**params, "full": full}
        owed = self._allocation_of(conn, entity_id, y, "DEDUCTION") or 0
        repaid = self._repayments(conn, entity_id, y)
        after, still = m.deduct(full, owed + repaid)
        return after, {
            **params,
            "full": full,
            "deducted": full - after,
            "repaid": repaid,
            "still_owed": still,  # more owed than this year's allocation: left on record
        }

    def _allocation_of(self, conn: Connection, entity_id: str, y: int, kind: str) -> int | None:
        row = first(conn, s.ALLOCATION_ROW, entity_id=entity_id, year=y, kind=kind)
        return None if row is None else int(row.tonnes)

    def _excluded(self, conn: Connection, y: int) -> set[str]:
        return {r.entity_id for r in fetch(conn, s.EXCLUDED_IN, year=y)}

    def allocate(self, actor: Actor, key: str, *, year_: int, kind: str) -> dict[str, Any]:
        """The year's pre-allocation (PRE) or true-up (TRUE_UP) for every covered entity, as one
        batch of registry proposals a second operator approves. Each happens once per entity
        and year: a later run takes only entities not done yet, proposals the checker voided or
        let expire, and entities the registry refused before; with nothing left it is refused.
        The true-up issues the difference to the final allocation, or claws it back."""
        data = {"year": year_, "kind": kind}

        def body(uow: UnitOfWork) -> dict[str, Any]:
            require_role(actor, Role.OPERATOR)
            conn = uow.conn
            y = year(year_)
            choice(kind, "kind", ("PRE", "TRUE_UP"))
            m.plan_year(y)  # refuses a year without rules
            factors = self.factor_table(conn)
            excluded = self._excluded(conn, y)
            unit_class = f"CEA-{y}"
            batch_ref = f"compliance-{y}-{kind.lower()}-{new_id()[:8]}"
            skipped: list[dict[str, Any]] = []
            planned: list[tuple[Any, list[tuple[str, int, dict[str, Any] | None, int]]]] = []
            for cov in fetch(conn, s.COVERED_IN_YEAR, year=y):
                eid = cov.entity_id
                if eid in excluded:
                    continue
                prior = first(conn, s.ALLOCATION_ROW, entity_id=eid, year=y, kind=kind)
                if prior is not None and self._posted_state(conn, prior) not in (
                    "VOIDED",
                    "EXPIRED",
                ):
                    continue  # done, or waiting for the checker
                # an entity whose entitlement cannot be worked out (not verified, no units, a
                # factor missing) or whose movement the registry refuses is skipped, with why
                try:
                    planned.append((cov, self._movements(conn, cov, y, kind, factors, prior)))
                except DomainError as err:
                    skipped.append({"entity_id": eid, "reason": err.code})
            lines = self._propose_allocations(
                uow, actor, planned, y, unit_class, batch_ref, skipped
            )
            if not lines and not skipped:
                if kind == "PRE":
                    raise Conflict(
                        "ALREADY_ALLOCATED", f"{y} was pre-allocated already", "该年度已预分配"
                    )
                raise Conflict("TRUE_UP_DONE", f"every {y} true-up has run", f"{y} 年度核定已完成")
            out = {
                "year": y,
                "kind": kind,
                "batch_ref": batch_ref,
                "lines": lines,
                "skipped": skipped,
                "issue": sum(
                    ln["tonnes"]
                    for ln in lines
                    if ln["kind"] in ("PRE", "TRUE_UP") and ln["tonnes"] > 0
                ),
                "claw_back": -sum(
                    ln["tonnes"] for ln in lines if ln["kind"] == "TRUE_UP" and ln["tonnes"] < 0
                ),
            }
            journal.append(
                uow,
                "compliance.allocated",
                actor.username,
                {k: out[k] for k in ("year", "kind", "batch_ref", "issue", "claw_back")},
            )
            return out

        return idempotency.run(self.db, actor.username, key, "allocate", data, body)

    def _movements(
        self,
        conn: Connection,
        cov: Any,
        y: int,
        kind: str,
        factors: m.FactorTable,
        prior: Any,
    ) -> list[tuple[str, int, dict[str, Any] | None, int]]:
        """(kind, tonnes, parameters, movement) rows of one entity's allocation run; a prior
        record the checker voided or let lapse is proposed again as it was (parameters None)."""
        if prior is not None:
            return [(kind, int(prior.tonnes), None, int(prior.tonnes))]
        if kind == "PRE":
            tonnes, params = self.entitlement(conn, cov, y, "PRE", factors)
            return [("PRE", tonnes, params, tonnes)]
        if self._verified(conn, cov.entity_id, y) is None:
            raise Conflict("NOT_VERIFIED", f"no confirmed {y} emissions", f"{y} 年度排放量未确认")
        final, params = self.entitlement(conn, cov, y, "FINAL", factors)
        pre = self._allocation_of(conn, cov.entity_id, y, "PRE") or 0
        diff = m.true_up(final, pre)
        return [("FINAL", final, params, 0), ("TRUE_UP", diff, {"pre": pre}, diff)]

    def _propose_allocations(
        self,
        uow: UnitOfWork,
        actor: Actor,
        planned: Sequence[tuple[Any, list[tuple[str, int, dict[str, Any] | None, int]]]],
        y: int,
        unit_class: str,
        batch_ref: str,
        skipped: list[dict[str, Any]],
    ) -> list[dict[str, Any]]:
        """The allocation records of a run and their registry proposals (issue if positive,
        claw back if negative), all proposed at once; an entity the registry refuses goes to
        `skipped` with why, and nothing is written for it. A record with parameters None exists
        already: its proposal is made again."""
        moving = [
            (cov, kind, move)
            for cov, movements in planned
            for kind, _, _, move in movements
            if move
        ]
        if len({cov.entity_id for cov, _, _ in moving}) != len(moving):
            raise RuntimeError("one movement of units per entity and run")
        proposals = self.registry.propose_movements(
            uow,
            actor,
            [
                (
                    Op.ALLOCATE if move > 0 else Op.CLAWBACK,
                    cov.account_id,
                    unit_class,
                    abs(move),
                    f"{y} {kind}",
                )
                for cov, kind, move in moving
            ],
            batch_ref,
        )
        proposed = {cov.entity_id: p for (cov, _, _), p in zip(moving, proposals, strict=True)}
        lines: list[dict[str, Any]] = []
        records: list[dict[str, Any]] = []
        a = s.compliance_allocations
        for cov, movements in planned:
            p = proposed.get(cov.entity_id)
            if isinstance(p, DomainError):
                skipped.append({"entity_id": cov.entity_id, "reason": p.code})
                continue
            for kind, tonnes, params, move in movements:
                transfer_id = p["id"] if move and p is not None else None
                if params is None:
                    uow.conn.execute(
                        sa.update(a)
                        .where(a.c.entity_id == cov.entity_id, a.c.year == y, a.c.kind == kind)
                        .values(transfer_id=transfer_id)
                    )
                else:
                    records.append(
                        _allocation_record(
                            uow, actor, cov.entity_id, y, kind, tonnes, params, transfer_id
                        )
                    )
                lines.append(
                    {
                        "entity_id": cov.entity_id,
                        "kind": kind,
                        "tonnes": tonnes,
                        "transfer_id": transfer_id,
                    }
                )
        if records:
            insert_many(uow.conn, a, records)
        return lines

    def exclude(
        self, actor: Actor, key: str, *, entity_id: str, year_: int, reason: str
    ) -> dict[str, Any]:
        data = {"entity_id": entity_id, "year": year_, "reason": reason}

        def body(uow: UnitOfWork) -> dict[str, Any]:
            require_role(actor, Role.OPERATOR)
            self._covered(uow.conn, entity_id)
            y = year(year_)
            if entity_id in self._excluded(uow.conn, y):
                raise Conflict("ALREADY_EXCLUDED", f"excluded from {y} already", "已排除")
            row = {
                "entity_id": entity_id,
                "year": y,
                "reason": text(reason, "reason", required=True, max_len=500),
                "created_by": actor.username,
                "created_at": iso(uow.now),
            }
            uow.conn.execute(sa.insert(s.compliance_exclusions).values(**row))
            journal.append(uow, "compliance.excluded", actor.username, row)
            return row

        return idempotency.run(self.db, actor.username, key, "exclude", data, body)

    # ------------------------------------------------------------ obligation and surrender

    def _obligation(self, conn: Connection, covered: Any, y: int) -> tuple[int, bool] | None:
        """(tonnes due, provisional): verified emissions with the plan year's caps, None until
        the report is confirmed. The caps read the final allocation recorded at the true-up
        (per unit, before any deduction), never today's factors; before it, the obligation is
        the verified emissions, provisional where a cap may still lower it. A power entity's
        verified emissions split between coal and gas in the proportion of its fuel lines."""
        verified = self._verified(conn, covered.entity_id, y)
        if verified is None:
            return None
        plan = m.plan_year(y)
        if covered.sector != "power":
            return m.obligation([m.ObligationPart(m.PartKind.INDUSTRIAL, verified, 0)], plan), False
        final = first(conn, s.ALLOCATION_ROW, entity_id=covered.entity_id, year=y, kind="FINAL")
        if final is None:
            return verified, plan.coal_cap_share is not None or plan.gas_capped_at_allocation
        allocated = {"coal": 0, "gas": 0}
        for unit in json.loads(final.parameters)["units"].values():
            allocated[unit["fuel"]] += int(unit["tonnes"])
        burnt = {"coal": Decimal(0), "gas": Decimal(0)}
        for ln in json.loads(self._report_row(conn, covered.entity_id, y).lines):
            if ln["source"].startswith("fuel:"):
                family = "gas" if m.is_gas(ln["source"][5:]) else "coal"
                burnt[family] += Decimal(ln["tco2"])
        total = burnt["coal"] + burnt["gas"]
        gas_verified = m.half_up(verified * burnt["gas"] / total) if total else 0
        parts = [
            m.ObligationPart(m.PartKind.COAL, verified - gas_verified, allocated["coal"]),
            m.ObligationPart(m.PartKind.GAS, gas_verified, allocated["gas"]),
        ]
        return m.obligation(parts, plan), False

    def surrender(
        self,
        actor: Actor,
        key: str,
        *,
        entity_id: str,
        year_: int,
        unit_class: str,
        quantity: int,
    ) -> dict[str, Any]:
        """清缴 through the registry, with the year's rules checked in the same transaction:
        eligible CEA vintages, CCER up to the plan's share of the obligation, nothing else."""
        data = {
            "entity_id": entity_id,
            "year": year_,
            "unit_class": unit_class,
            "quantity": quantity,
        }

        def body(uow: UnitOfWork) -> dict[str, Any]:
            require_role(actor, Role.ENTERPRISE)  # the holder surrenders; the registry agrees
            self._own_or_operator(actor, entity_id)
            conn = uow.conn
            covered = self._covered(conn, entity_id)
            y = year(year_)
            plan = m.plan_year(y)
            obligation = self._obligation(conn, covered, y)
            if obligation is None:
                raise Conflict(
                    "OBLIGATION_NOT_SET",
                    f"the {y} report is not confirmed yet: nothing is due",
                    f"{y} 年度排放量尚未确认",
                )
            due, provisional = obligation
            code = self.registry.unit_class_code(conn, unit_class)  # refuses malformed classes
            kind, vintage = code.split("-")[0], int(code.split("-")[1])
            done = self.registry.surrendered(conn, [covered.account_id], y)
            q = quantity if isinstance(quantity, int) and not isinstance(quantity, bool) else 0
            if kind == "CEA":
                self._check_cea(conn, covered.entity_id, plan, vintage, q, done)
            elif kind == "CCER":
                if provisional:
                    raise Conflict(
                        "OBLIGATION_PROVISIONAL",
                        f"the CCER limit follows the final {y} allocation: wait for the true-up",
                        f"CCER 抵销上限取决于 {y} 年度最终配额: 请待核定后清缴",
                    )
                m.check_ccer(due, _ccer(done), q, plan)
            else:
                raise Conflict(
                    "UNIT_NOT_ELIGIBLE",
                    f"{kind} cannot be surrendered in the national market",
                    f"{kind} 不能用于全国市场清缴",
                )
            t = self.registry.surrender_in(
                uow,
                actor,
                from_account=covered.account_id,
                unit_class=unit_class,
                quantity=quantity,
                compliance_year=y,
            )
            return {"transfer": t, "status": self._status_of(conn, covered, y, due=obligation)}

        return idempotency.run(self.db, actor.username, key, "compliance_surrender", data, body)

    def _check_cea(
        self,
        conn: Connection,
        entity_id: str,
        plan: PlanYear,
        vintage: int,
        quantity: int,
        done: Mapping[str, int],
    ) -> None:
        """A CEA vintage for the year: eligible, borrowed (counted against what was borrowed),
        or an older vintage within the year's carry-over limit."""
        borrowed = self._borrowed(conn, entity_id, plan.year) if vintage == plan.borrow_from else 0
        if borrowed:
            left = borrowed - done.get(f"CEA-{vintage}", 0)
            if quantity > left:
                raise Conflict(
                    "BORROWED_EXCEEDED",
                    f"CEA {vintage} counts for {plan.year} only as borrowed allowances: "
                    f"{left} t of them left",
                    f"{vintage} 年度配额仅可按预支数量用于 {plan.year} 年度清缴 (剩余 {left} 吨)",
                )
            return
        m.check_vintage(vintage, plan)
        rule = plan.carry_over
        if rule is not None and vintage <= rule.last_old_vintage:
            limit = self._carry_over_limit(conn, entity_id, rule)
            m.check_carry_over(limit, self._old_used(plan, done), quantity, rule)

    @staticmethod
    def _old_used(plan: PlanYear, done: Mapping[str, int]) -> int:
        rule = plan.carry_over
        if rule is None:
            return 0
        return sum(
            q
            for uc, q in done.items()
            if uc.startswith("CEA-") and int(uc[4:]) <= rule.last_old_vintage
        )

    def _carry_over_left(
        self, conn: Connection, entity_id: str, plan: PlanYear, done: Mapping[str, int]
    ) -> int | None:
        """What older vintages may still cover of the year; None where no limit applies."""
        rule = plan.carry_over
        if rule is None:
            return None
        return self._carry_over_limit(conn, entity_id, rule) - self._old_used(plan, done)

    def _carry_over_limit(self, conn: Connection, entity_id: str, rule: CarryOver) -> int:
        """The rule's net sales: of the carried vintages, sold by the end of its last sales
        year (China time)."""
        end = iso(datetime(rule.sales_to + 1, 1, 1, tzinfo=SHANGHAI))
        classes = [f"CEA-{v}" for v in range(rule.sales_from, rule.sales_to + 1)]
        return m.carry_over_limit(rule, self.registry.net_sold(conn, entity_id, classes, end))

    def borrow(
        self, actor: Actor, key: str, *, entity_id: str, year_: int, quantity: int
    ) -> dict[str, Any]:
        """预支 (2021–22): an entity whose gap after the true-up — what it owes under the year's
        caps less its final allocation — exceeds 10 % of its verified emissions borrows up to
        half the gap from the lending year's allowances, once a year (again only if the checker
        voided or let lapse the first proposal). Once posted, the units count for this year's
        surrender and come off the lending year's final allocation, which must not be set yet.
        The operator records the entity's application as an allocation proposal (allocations are
        operators' to make) and the registry's checker approves it."""
        data = {"entity_id": entity_id, "year": year_, "quantity": quantity}

        def body(uow: UnitOfWork) -> dict[str, Any]:
            require_role(actor, Role.OPERATOR)
            conn = uow.conn
            covered = self._covered(conn, entity_id)
            y = year(year_)
            plan = m.plan_year(y)
            lending = plan.borrow_from
            if lending is None:
                raise Conflict(
                    "BORROWING_NOT_ALLOWED",
                    f"borrowing is not part of the {y} rules",
                    f"{y} 年度不允许预支配额",
                )
            verified = self._verified(conn, entity_id, y)
            final = self._allocation_of(conn, entity_id, y, "FINAL")
            obligation = self._obligation(conn, covered, y)
            if verified is None or final is None or obligation is None:
                raise Conflict(
                    "TRUE_UP_PENDING",
                    f"borrowing follows the {y} true-up",
                    f"须在 {y} 年度配额核定后预支",
                )
            if self._allocation_of(conn, entity_id, lending, "FINAL") is not None:
                raise Conflict(
                    "LENDING_YEAR_ALLOCATED",
                    f"{lending}'s final allocation is set: nothing left to repay from",
                    f"{lending} 年度配额已核定, 无法预支",
                )
            prior = first(conn, s.ALLOCATION_ROW, entity_id=entity_id, year=y, kind="BORROW")
            if prior is not None and self._posted_state(conn, prior) not in ("VOIDED", "EXPIRED"):
                raise Conflict("ALREADY_BORROWED", f"{y} borrowing is done", "该年度已预支")
            limit = m.borrowing_limit(obligation[0], verified, final, plan)
            q = m.check_borrowing(quantity, limit, plan)
            transfer = self.registry.propose_allocation(
                uow,
                actor,
                to_account=covered.account_id,
                unit_class=f"CEA-{lending}",
                quantity=q,
                reason=f"{y} borrowing from {lending}",
                batch_ref=f"compliance-{y}-borrow-{new_id()[:8]}",
            )
            params = {"from_year": lending, "limit": limit, "gap": obligation[0] - final}
            if prior is not None:  # the lapsed application gives way to this one
                uow.conn.execute(
                    sa.delete(s.compliance_allocations).where(
                        s.compliance_allocations.c.id == prior.id
                    )
                )
            record = _allocation_record(
                uow, actor, entity_id, y, "BORROW", q, params, transfer["id"]
            )
            insert_many(uow.conn, s.compliance_allocations, [record])
            out = {
                "entity_id": entity_id,
                "year": y,
                "borrowed": q,
                "unit_class": f"CEA-{lending}",
                "transfer_id": transfer["id"],
                **params,
            }
            journal.append(uow, "compliance.borrowed", actor.username, out)
            return out

        return idempotency.run(self.db, actor.username, key, "compliance_borrow", data, body)

    def _posted_state(self, conn: Connection, row: Any) -> str:
        """An allocation record's registry proposal: PENDING, COMPLETED, VOIDED or EXPIRED."""
        if not row.transfer_id:
            return "COMPLETED"
        return self.registry.transfer_status(conn, row.transfer_id) or "COMPLETED"

    def _borrowed(self, conn: Connection, entity_id: str, y: int) -> int:
        """What the entity borrowed for year `y` and received (the proposal posted)."""
        row = first(conn, s.ALLOCATION_ROW, entity_id=entity_id, year=y, kind="BORROW")
        if row is None or self._posted_state(conn, row) != "COMPLETED":
            return 0
        return int(row.tonnes)

    def _repayments(self, conn: Connection, entity_id: str, y: int) -> int:
        """What an entity received from year `y`'s allowances in advance, to come off its final
        allocation of `y`."""
        return sum(
            self._borrowed(conn, entity_id, p.year) for p in PLAN_YEARS if p.borrow_from == y
        )

    def _status_of(
        self,
        conn: Connection,
        covered: Any,
        y: int,
        *,
        excluded_ids: set[str] | None = None,
        due: tuple[int, bool] | None = None,
    ) -> dict[str, Any]:
        """`excluded_ids` and `due`, when the caller has them, spare working them out again."""
        if excluded_ids is None:
            excluded_ids = self._excluded(conn, y)
        excluded = covered.entity_id in excluded_ids
        if excluded:
            obligation = None
        else:
            obligation = due if due is not None else self._obligation(conn, covered, y)
        tonnes, provisional = obligation if obligation is not None else (None, False)
        done = self.registry.surrendered(conn, [covered.account_id], y)
        surrendered = sum(done.values())
        plan = m.plan_year(y)
        borrowed = self._borrowed(conn, covered.entity_id, y) if plan.borrow_from else None
        st = m.status(
            excluded=excluded, verified=tonnes is not None, due=tonnes or 0, surrendered=surrendered
        )
        return {
            "entity_id": covered.entity_id,
            "account_id": covered.account_id,
            "sector": covered.sector,
            "region": covered.region,
            "year": y,
            "status": st.value,
            "obligation": tonnes,
            "obligation_provisional": provisional,
            "surrendered": surrendered,
            "surrendered_ccer": _ccer(done),
            "shortfall": m.shortfall(tonnes, surrendered) if tonnes is not None else None,
            "allocation": self._allocation_of(conn, covered.entity_id, y, "FINAL"),
            "pre_allocation": self._allocation_of(conn, covered.entity_id, y, "PRE"),
            "borrowed": borrowed,
            "borrowed_left": None
            if borrowed is None
            else borrowed - done.get(f"CEA-{plan.borrow_from}", 0),
            "carry_over_left": self._carry_over_left(conn, covered.entity_id, plan, done),
        }

    def entity_status(self, actor: Actor, entity_id: str, year_: int) -> dict[str, Any]:
        """One entity's status for the year: the operator's, or the enterprise's own."""
        if actor.role is not Role.OPERATOR:
            require_role(actor, Role.ENTERPRISE)
            if actor.entity_id != entity_id:
                raise Forbidden(
                    "NOT_YOUR_ENTITY", "an enterprise sees its own status", "只能查看本主体"
                )
        y = year(year_)
        with self.db.read() as uow:
            return self._status_of(uow.conn, self._covered(uow.conn, entity_id), y)

    def status(self, actor: Actor, year_: int) -> dict[str, Any]:
        """Every covered entity's status for the year, and the market's compliance rate
        (compliant ÷ entities with an obligation, excluded ones left out), counts by sector
        and by region."""
        require_role(actor, Role.OPERATOR)
        y = year(year_)
        with self.db.read() as uow:
            rows = fetch(uow.conn, s.COVERED_IN_YEAR, year=y)
            excluded = self._excluded(uow.conn, y)
            entities_ = [self._status_of(uow.conn, r, y, excluded_ids=excluded) for r in rows]
        by: dict[str, dict[str, dict[str, int]]] = {"sector": {}, "region": {}}
        for e in entities_:
            for field, groups in by.items():
                acc = groups.setdefault(e[field], {st.value: 0 for st in m.ComplianceStatus})
                acc[e["status"]] += 1
        counted = [e for e in entities_ if e["status"] != m.ComplianceStatus.EXCLUDED.value]
        compliant = sum(1 for e in counted if e["status"] == m.ComplianceStatus.COMPLIANT.value)
        return {
            "year": y,
            "deadline": m.plan_year(y).deadline,
            "entities": entities_,
            "by_sector": by["sector"],
            "by_region": by["region"],
            "compliance_rate": f"{Decimal(compliant) / len(counted):.4f}" if counted else None,
            "non_compliant": [e["entity_id"] for e in counted if e["status"] != "compliant"],
        }

    # ------------------------------------------------------------ penalties

    def penalties(
        self,
        actor: Actor,
        key: str,
        *,
        year_: int,
        multiple: str = "5",
        average_price: str | None = None,
        fine: str = "20000.00",
    ) -> dict[str, Any]:
        """After the deadline: each entity in deficit gets its penalty, and its shortfall is
        recorded as a deduction from next year's allocation. The price is the exchange's
        average over the month ending at the deadline unless the operator gives the published
        figure. Runs once per year."""
        data = {"year": year_, "multiple": multiple, "average_price": average_price, "fine": fine}

        def body(uow: UnitOfWork) -> dict[str, Any]:
            require_role(actor, Role.OPERATOR)
            conn = uow.conn
            y = year(year_)
            plan = m.plan_year(y)
            if plan.deadline is None:
                raise Conflict(
                    "DEADLINE_UNKNOWN",
                    f"the {y} surrender deadline is not in the rules yet",
                    f"{y} 年度清缴截止日尚未确定",
                )
            deadline = date.fromisoformat(plan.deadline)
            if m.china_day(uow.now) <= deadline:
                raise Conflict(
                    "DEADLINE_NOT_PASSED",
                    f"the {y} deadline is {plan.deadline}",
                    f"{y} 年度清缴截止日为 {plan.deadline}",
                )
            a = s.compliance_allocations.c
            if first(conn, sa.select(a.id).where(a.year == y + 1, a.kind == "DEDUCTION")):
                raise Conflict("PENALTIES_DONE", f"{y} penalties were set already", "该年度已处罚")
            mult = decimal(multiple, "multiple")
            fine_fen = fen_from_yuan(text(fine, "fine", required=True))
            m.check_penalty_terms(plan, mult, fine_fen)
            price: int | None = None
            if plan.penalty is PenaltyRule.DECREE_775:
                if average_price is not None:
                    price = fen_from_yuan(text(average_price, "average_price", required=True))
                elif self.exchange is not None:
                    price = self.exchange.average_price(conn, m.month_before(deadline), deadline)
            lines = []
            excluded = self._excluded(conn, y)
            for cov in fetch(conn, s.COVERED_IN_YEAR, year=y):
                st = self._status_of(conn, cov, y, excluded_ids=excluded)
                if st["status"] != m.ComplianceStatus.IN_DEFICIT.value:
                    continue
                p = m.penalty(
                    plan,
                    st["shortfall"],
                    average_price_fen=price,
                    multiple=mult,
                    fine_fen=fine_fen,
                )
                line = {
                    "entity_id": cov.entity_id,
                    "shortfall": p.shortfall,
                    "price": None if p.price_fen is None else yuan_from_fen(p.price_fen),
                    "multiple": None if p.multiple is None else str(p.multiple),
                    "fine": yuan_from_fen(p.fine_fen),
                    "deduction_next_year": p.deduction,
                }
                params = {"penalty_year": y, "rule": plan.penalty.value}
                params |= {k: line[k] for k in _PENALTY_TERMS}
                record = _allocation_record(
                    uow, actor, cov.entity_id, y + 1, "DEDUCTION", p.deduction, params
                )
                insert_many(uow.conn, s.compliance_allocations, [record])
                lines.append(line)
            out = {"year": y, "rule": plan.penalty.value, "penalties": lines}
            journal.append(uow, "compliance.penalties_set", actor.username, out)
            return out

        return idempotency.run(self.db, actor.username, key, "penalties", data, body)

    def penalty_report(self, actor: Actor, year_: int) -> dict[str, Any]:
        """The penalties set for a year, as recorded with each deduction from the next."""
        require_role(actor, Role.OPERATOR)
        y = year(year_)
        a = s.compliance_allocations.c
        with self.db.read() as uow:
            rows = fetch(
                uow.conn,
                sa.select(s.compliance_allocations)
                .where(a.year == y + 1, a.kind == "DEDUCTION")
                .order_by(a.entity_id),
            )
        params = [json.loads(r.parameters) for r in rows]
        return {
            "year": y,
            "rule": params[0]["rule"] if params else m.plan_year(y).penalty.value,
            "penalties": [
                {"entity_id": r.entity_id}
                | {k: p.get(k) for k in _PENALTY_TERMS}
                | {"deduction_next_year": int(r.tonnes)}
                for r, p in zip(rows, params, strict=True)
            ],
        }

    @staticmethod
    def plan_years() -> list[dict[str, Any]]:
        """Every plan year's rules as data, with the surrender deadline (public)."""

        def plain(value: Any) -> Any:
            if isinstance(value, Decimal):
                return str(value)
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            return value

        return [plain(dataclasses.asdict(p)) for p in PLAN_YEARS]
