"""Compliance tables (SQLAlchemy Core).

covered_entities:   an entity under the obligation, its registry holding account and sector
facilities:         the entity's plants; generating_units: the power units the rules need
monthly_records:    monthly evidence (fuel, generation, supply, heat, purchases, output)
emission_reports:   one per entity and year: draft → submitted → under verification →
                    verified | returned → confirmed; report_events is its timeline
compliance_factors: factor and benchmark rows entered after the built-in reference data
compliance_allocations: pre-allocation, final allocation, true-up and deductions, each once
compliance_exclusions:  an entity taken out of a year's cycle, with the reason

Quantities of activity data and factor values are decimal text (exact, never float); tonnes of
emissions and allocation are integers.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from carbonhub.core.db import metadata

_BIGINT = sa.BigInteger().with_variant(sa.Integer, "sqlite")

covered_entities = sa.Table(
    "covered_entities",
    metadata,
    sa.Column("entity_id", sa.String(36), sa.ForeignKey("entities.id"), primary_key=True),
    sa.Column("account_id", sa.String(20), sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("sector", sa.String(16), nullable=False),
    sa.Column("region", sa.String(32), nullable=False),
    sa.Column("since", sa.Integer, nullable=False),  # the first covered year
    sa.Column("created_at", sa.String(32), nullable=False),
)

facilities = sa.Table(
    "facilities",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column(
        "entity_id",
        sa.String(36),
        sa.ForeignKey("covered_entities.entity_id"),
        nullable=False,
        index=True,
    ),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("sector", sa.String(16), nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
)

generating_units = sa.Table(
    "generating_units",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("facility_id", sa.String(36), sa.ForeignKey("facilities.id"), nullable=False),
    sa.Column("code", sa.String(40), nullable=False),
    sa.Column("category", sa.String(4), nullable=False),  # I, II, III, IV
    sa.Column("capacity_mw", sa.String(20), nullable=False),
    sa.Column("cooling", sa.String(8), nullable=False),
    sa.Column("fuel", sa.String(16), nullable=False),
    sa.Column("heat_supply", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.UniqueConstraint("facility_id", "code", name="uq_generating_units_code"),
)

monthly_records = sa.Table(
    "monthly_records",
    metadata,
    sa.Column("id", _BIGINT, primary_key=True, autoincrement=True),
    sa.Column("entity_id", sa.String(36), nullable=False),
    sa.Column("scope", sa.String(36), nullable=False),  # a generating unit's id, or "" (entity)
    sa.Column("year", sa.Integer, nullable=False),
    sa.Column("month", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(24), nullable=False),
    sa.Column("item", sa.String(40), nullable=False),  # the fuel or material, or ""
    sa.Column("quantity", sa.String(32), nullable=False),
    sa.Column("params", sa.Text, nullable=False),  # measured NCV, carbon, oxidation … (JSON)
    sa.Column("source", sa.String(16), nullable=False),  # manual or import
    sa.Column("created_by", sa.String(64), nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.UniqueConstraint(
        "entity_id", "year", "scope", "month", "kind", "item", name="uq_monthly_records_line"
    ),
)

emission_reports = sa.Table(
    "emission_reports",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("entity_id", sa.String(36), nullable=False),
    sa.Column("year", sa.Integer, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("emissions", sa.BigInteger, nullable=True),  # reported, whole tonnes
    sa.Column("lines", sa.Text, nullable=False),  # the computed sources (JSON)
    sa.Column("verifier_entity_id", sa.String(36), nullable=True),
    sa.Column("verified_emissions", sa.BigInteger, nullable=True),
    sa.Column("findings", sa.Text, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("updated_at", sa.String(32), nullable=False),
    sa.UniqueConstraint("entity_id", "year", name="uq_emission_reports_year"),
    sa.Index("ix_emission_reports_year_status", "year", "status"),
)

report_events = sa.Table(
    "report_events",
    metadata,
    sa.Column("id", _BIGINT, primary_key=True, autoincrement=True),
    sa.Column("report_id", sa.String(36), sa.ForeignKey("emission_reports.id"), nullable=False),
    sa.Column("from_status", sa.String(20), nullable=False),
    sa.Column("to_status", sa.String(20), nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("at", sa.String(32), nullable=False),
    sa.Index("ix_report_events_report", "report_id", "id"),
)

compliance_factors = sa.Table(
    "compliance_factors",
    metadata,
    sa.Column("id", _BIGINT, primary_key=True, autoincrement=True),  # entry order: later amends
    sa.Column("table_name", sa.String(40), nullable=False),
    sa.Column("key", sa.String(40), nullable=False),
    sa.Column("first", sa.Integer, nullable=False),
    sa.Column("last", sa.Integer, nullable=True),
    sa.Column("value", sa.String(32), nullable=False),
    sa.Column("unit", sa.String(32), nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("certainty", sa.String(12), nullable=False),
    sa.Column("entered_by", sa.String(64), nullable=False),
    sa.Column("entered_at", sa.String(32), nullable=False),
)

compliance_allocations = sa.Table(
    "compliance_allocations",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("entity_id", sa.String(36), nullable=False),
    sa.Column("year", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(12), nullable=False),  # PRE, FINAL, TRUE_UP, DEDUCTION
    sa.Column("tonnes", sa.BigInteger, nullable=False),
    sa.Column("parameters", sa.Text, nullable=False),
    sa.Column("transfer_id", sa.String(36), nullable=True),  # the registry's proposal
    sa.Column("created_by", sa.String(64), nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.UniqueConstraint("entity_id", "year", "kind", name="uq_compliance_allocations_once"),
)

compliance_exclusions = sa.Table(
    "compliance_exclusions",
    metadata,
    sa.Column("entity_id", sa.String(36), primary_key=True),
    sa.Column("year", sa.Integer, primary_key=True),
    sa.Column("reason", sa.String(500), nullable=False),
    sa.Column("created_by", sa.String(64), nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
)


def _p(name: str) -> sa.BindParameter[Any]:
    return sa.bindparam(name)


# the queries the service runs per entity, built once (their compiled form is cached by identity)
_mr = monthly_records.c
# what a computation reads of a record (a report reads 360 a year for ten units)
_RECORD_FIELDS = (_mr.kind, _mr.month, _mr.quantity, _mr.item, _mr.scope, _mr.params)
RECORDS_OF_YEAR = (
    sa.select(*_RECORD_FIELDS)
    .where(_mr.entity_id == _p("entity_id"), _mr.year == _p("year"))
    .order_by(_mr.month, _mr.id)
)
OUTPUT_RECORDS_OF_YEAR = (
    sa.select(*_RECORD_FIELDS)
    .where(
        _mr.entity_id == _p("entity_id"),
        _mr.year == _p("year"),
        _mr.kind.in_(["generation", "supply", "heat"]),
    )
    .order_by(_mr.month, _mr.id)
)
UNITS_OF_ENTITY = (
    sa.select(generating_units)
    .join(facilities, facilities.c.id == generating_units.c.facility_id)
    .where(facilities.c.entity_id == _p("entity_id"))
)
REPORT_OF_YEAR = sa.select(emission_reports).where(
    emission_reports.c.entity_id == _p("entity_id"), emission_reports.c.year == _p("year")
)
REPORT_BY_ID = sa.select(emission_reports).where(emission_reports.c.id == _p("id"))
ALLOCATION_ROW = sa.select(compliance_allocations).where(
    compliance_allocations.c.entity_id == _p("entity_id"),
    compliance_allocations.c.year == _p("year"),
    compliance_allocations.c.kind == _p("kind"),
)
COVERED_IN_YEAR = (
    sa.select(covered_entities)
    .where(covered_entities.c.since <= _p("year"))
    .order_by(covered_entities.c.entity_id)
)
COVERED = sa.select(covered_entities).where(covered_entities.c.entity_id == _p("entity_id"))
EXCLUDED_IN = sa.select(compliance_exclusions.c.entity_id).where(
    compliance_exclusions.c.year == _p("year")
)
_LINE = (
    monthly_records.c.entity_id,
    monthly_records.c.scope,
    monthly_records.c.month,
    monthly_records.c.kind,
    monthly_records.c.item,
)
LINES_OF_YEAR = sa.select(*_LINE).where(monthly_records.c.year == _p("year"))
LINES_OF_ENTITY_YEAR = sa.select(*_LINE).where(
    monthly_records.c.year == _p("year"), monthly_records.c.entity_id == _p("entity_id")
)
FACTOR_ROWS = sa.select(compliance_factors).order_by(compliance_factors.c.id)
