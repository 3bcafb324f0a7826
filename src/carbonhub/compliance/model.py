"""Compliance rules as pure functions: accounting, allocation, obligation, surrender, penalty.

No I/O, no clock, no database. Quantities that feed a ledger are whole tonnes; the arithmetic
in between is Decimal (never float) and is rounded once, half-up, at the end of each figure.
Pre-allocation rounds down: a provisional issue never exceeds its share. Sources: DESIGN §7 and
research/mrv-inclusion-anchors.md part A; factors come from `reference.FACTORS` (or the
operator's later rows), each with its source and certainty.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from enum import StrEnum
from types import MappingProxyType
from typing import NamedTuple

from carbonhub.compliance.reference import (
    FACTORS,
    PLAN_YEARS,
    Basis,
    CarryOver,
    Certainty,
    Factor,
    IndustrialStrategy,
    PenaltyRule,
    PlanYear,
)
from carbonhub.core.errors import Conflict, InvalidInput, NotFound
from carbonhub.core.timefmt import SHANGHAI

C_TO_CO2 = Decimal(44) / Decimal(12)  # molar masses: CO2 / C
ONE = Decimal(1)
ZERO = Decimal(0)
HOURS_IN_YEAR = {False: 8760, True: 8784}


def half_up(value: Decimal) -> int:
    """Whole tonnes (or fen), 四舍五入."""
    return int(value.quantize(ONE, rounding=ROUND_HALF_UP))


def round_down(value: Decimal) -> int:
    return int(value.quantize(ONE, rounding=ROUND_FLOOR))


# ---------------------------------------------------------------- factor tables


class FactorTable:
    """Versioned factor rows; the latest row that covers a year wins (later rows amend)."""

    def __init__(self, rows: Iterable[Factor] = FACTORS) -> None:
        self._rows: dict[tuple[str, str], list[Factor]] = {}
        for r in rows:
            self._rows.setdefault((r.table, r.key), []).append(r)

    def get(self, table: str, key: str, year: int) -> Factor:
        for r in reversed(self._rows.get((table, key), [])):
            if r.covers(year):
                return r
        raise NotFound(
            "FACTOR_MISSING",
            f"no value of {table}/{key} for {year}: enter it from the official source first",
            f"缺少 {year} 年 {table}/{key} 的取值: 请先按官方文件录入",
            table=table,
            key=key,
            year=year,
        )

    def value(self, table: str, key: str, year: int) -> Decimal:
        return self.get(table, key, year).value

    def rows(self) -> list[Factor]:
        return [r for rows in self._rows.values() for r in rows]


def plan_year(year: int, plans: Sequence[PlanYear] = PLAN_YEARS) -> PlanYear:
    for p in plans:
        if p.year == year:
            return p
    raise NotFound(
        "PLAN_YEAR_UNKNOWN", f"no compliance rules for {year}", f"{year} 年无履约规则", year=year
    )


# ---------------------------------------------------------------- activity data checks


def _bad(code: str, message: str, message_zh: str, **context: object) -> InvalidInput:
    return InvalidInput(code, message, message_zh, **context)


# plausible net calorific values (our bounds, wide on purpose: reject typos, not outliers)
NCV_RANGE: Mapping[str, tuple[Decimal, Decimal, str]] = {
    "coal": (Decimal(8), Decimal(33), "GJ/t"),  # lignite ~10 … anthracite ~30
    "natural_gas": (Decimal(300), Decimal(450), "GJ/10^4 Nm3"),  # methane alone ~358
    "diesel": (Decimal(40), Decimal(46), "GJ/t"),
    "fuel_oil": (Decimal(38), Decimal(44), "GJ/t"),
}


def nonnegative(value: Decimal, field_name: str) -> Decimal:
    if not value.is_finite() or value < 0:
        raise _bad(
            "ACTIVITY_NEGATIVE",
            f"{field_name} must be a non-negative number",
            f"{field_name} 不能为负数",
            field=field_name,
        )
    return value


def fraction(value: Decimal, field_name: str, *, positive: bool = False) -> Decimal:
    if not value.is_finite() or value < 0 or value > 1 or (positive and value == 0):
        raise _bad(
            "FRACTION_OUT_OF_RANGE",
            f"{field_name} must be a fraction between 0 and 1",
            f"{field_name} 应为 0 到 1 之间的比例",
            field=field_name,
        )
    return value


def check_generation(generation_mwh: Decimal, capacity_mw: Decimal, hours: int) -> None:
    """A unit cannot generate more than its capacity running every hour of the period."""
    nonnegative(generation_mwh, "generation")
    if generation_mwh > capacity_mw * hours:
        raise _bad(
            "GENERATION_ABOVE_CAPACITY",
            f"generation {generation_mwh} MWh exceeds capacity × hours "
            f"({capacity_mw} MW × {hours} h = {capacity_mw * hours} MWh)",
            f"发电量 {generation_mwh} MWh 超过装机容量 × 小时数 ({capacity_mw * hours} MWh)",
        )


# ---------------------------------------------------------------- emissions


@dataclass(frozen=True)
class Line:
    """One source's emissions and the parameters that made it, with their provenance."""

    source: str
    tco2: Decimal
    direct: bool
    parameters: Mapping[str, str] = field(default_factory=dict)
    defaults: tuple[str, ...] = ()  # which parameters came from the default tables
    unverified: tuple[str, ...] = ()  # which of those the research marks unverified


@dataclass(frozen=True)
class FuelUse:
    """A fuel burnt in the year: quantity in t (solid, liquid) or 10^4 Nm3 (gas).

    Measured values are used where the entity has them; otherwise the guideline's default, which
    is deliberately high (research A2.1). `element_carbon` (tC per t of fuel, from lab analysis)
    gives the carbon per GJ as element carbon ÷ NCV."""

    fuel: str
    quantity: Decimal
    ncv: Decimal | None = None  # GJ per unit
    carbon_per_gj: Decimal | None = None  # tC/GJ
    element_carbon: Decimal | None = None  # tC/t
    oxidation: Decimal | None = None


GAS_FUELS = frozenset({"natural_gas"})


def is_gas(fuel: str) -> bool:
    return fuel in GAS_FUELS


def _default_family(fuel: str) -> str:
    return "coal" if fuel.endswith("coal") or fuel == "coal" else fuel


def combustion(use: FuelUse, year: int, factors: FactorTable) -> Line:
    """E = FC × NCV × CC × OF × 44/12 (发电设施 guideline)."""
    nonnegative(use.quantity, "fuel quantity")
    family = _default_family(use.fuel)
    defaults: list[Factor] = []

    def take(measured: Decimal | None, table: str) -> Decimal:
        if measured is not None:
            return measured
        f = factors.get(table, family, year)
        defaults.append(f)
        return f.value

    ncv = take(use.ncv, "fuel.ncv")
    if family in NCV_RANGE:
        low, high, unit = NCV_RANGE[family]
        if not low <= ncv <= high:
            raise _bad(
                "NCV_OUT_OF_RANGE",
                f"net calorific value {ncv} {unit} of {use.fuel} is outside the physical range "
                f"{low}–{high} {unit}",
                f"{use.fuel} 低位发热量 {ncv} {unit} 超出物理范围 {low}–{high} {unit}",
                fuel=use.fuel,
            )
    if not ncv.is_finite() or ncv <= 0:
        raise _bad(
            "NCV_OUT_OF_RANGE", "the net calorific value must be positive", "低位发热量须为正数"
        )
    if use.carbon_per_gj is not None:
        carbon = nonnegative(use.carbon_per_gj, "carbon content")
    elif use.element_carbon is not None:
        fraction(use.element_carbon, "element carbon")
        carbon = use.element_carbon / ncv
    else:
        carbon = take(None, "fuel.carbon")
    oxidation = fraction(take(use.oxidation, "fuel.oxidation"), "oxidation", positive=True)
    tco2 = use.quantity * ncv * carbon * oxidation * C_TO_CO2
    return Line(
        f"fuel:{use.fuel}",
        tco2,
        True,
        {
            "quantity": str(use.quantity),
            "ncv": str(ncv),
            "carbon": str(carbon),
            "oxidation": str(oxidation),
        },
        tuple(f"{f.table}/{f.key}" for f in defaults),
        tuple(f"{f.table}/{f.key}" for f in defaults if f.certainty is Certainty.UNVERIFIED),
    )


def _factor_line(source: str, amount: Decimal, f: Factor, direct: bool) -> Line:
    return Line(
        source,
        amount * f.value,
        direct,
        {"amount": str(amount), "factor": str(f.value), "unit": f.unit},
        (f"{f.table}/{f.key}",),
        (f"{f.table}/{f.key}",) if f.certainty is Certainty.UNVERIFIED else (),
    )


def purchased_electricity(mwh: Decimal, year: int, factors: FactorTable) -> Line:
    """MWh × the ETS reporting grid factor (never the statistical series)."""
    nonnegative(mwh, "purchased electricity")
    return _factor_line(
        "purchased:electricity", mwh, factors.get("grid.ets", "national", year), False
    )


def purchased_heat(gj: Decimal, year: int, factors: FactorTable) -> Line:
    nonnegative(gj, "purchased heat")
    return _factor_line("purchased:heat", gj, factors.get("heat.ets", "purchased", year), False)


def carbonates(material: str, tonnes: Decimal, year: int, factors: FactorTable) -> Line:
    """Fluxes and raw meal: t × stoichiometric CO2 per t (limestone, dolomite)."""
    nonnegative(tonnes, material)
    return _factor_line(
        f"process:{material}", tonnes, factors.get("carbonate", material, year), True
    )


def clinker(
    tonnes: Decimal,
    year: int,
    factors: FactorTable,
    *,
    cao: Decimal | None = None,
    mgo: Decimal | None = None,
) -> Line:
    """Cement clinker: t × (CaO × 44/56 + MgO × 44/40) from carbonate-derived oxide fractions
    measured in the clinker; the default factor only when nothing was measured."""
    nonnegative(tonnes, "clinker")
    if cao is None and mgo is None:
        return _factor_line(
            "process:clinker", tonnes, factors.get("clinker", "default", year), True
        )
    if cao is None or mgo is None:
        raise _bad(
            "OXIDES_INCOMPLETE",
            "clinker CaO and MgO are measured together (or neither, for the default factor)",
            "熟料 CaO 与 MgO 含量须同时填报 (或均不填, 使用缺省值)",
        )
    ca = fraction(cao, "CaO")
    mg = fraction(mgo, "MgO")
    per_t = ca * factors.value("oxide", "CaO", year) + mg * factors.value("oxide", "MgO", year)
    return Line(
        "process:clinker",
        tonnes * per_t,
        True,
        {"clinker": str(tonnes), "CaO": str(ca), "MgO": str(mg), "tco2_per_t": str(per_t)},
    )


def anode(anode_t: Decimal, *, sulphur: Decimal = ZERO, ash: Decimal = ZERO) -> Line:
    """Aluminium electrolysis: net anode consumption × (1 − S − ash) × 44/12."""
    nonnegative(anode_t, "anode consumption")
    carbon = ONE - fraction(sulphur, "anode sulphur") - fraction(ash, "anode ash")
    if carbon < 0:
        raise _bad(
            "FRACTION_OUT_OF_RANGE",
            "anode sulphur and ash exceed the whole anode",
            "阳极硫分与灰分之和超过 100%",
        )
    return Line(
        "process:anode",
        anode_t * carbon * C_TO_CO2,
        True,
        {"anode": str(anode_t), "carbon": str(carbon)},
    )


def pfcs(
    output_t: Decimal,
    year: int,
    factors: FactorTable,
    *,
    cf4_kg_per_t: Decimal | None = None,
    c2f6_kg_per_t: Decimal | None = None,
) -> list[Line]:
    """Anode-effect PFCs of aluminium smelting: t of aluminium × kg per t / 1000 × GWP, with the
    measured (slope-method) factors where the smelter has them."""
    nonnegative(output_t, "aluminium output")
    lines = []
    for gas, measured in (("CF4", cf4_kg_per_t), ("C2F6", c2f6_kg_per_t)):
        used: list[Factor] = []
        if measured is None:
            ef_row = factors.get(f"pfc.{gas.lower()}", "prebake", year)
            used.append(ef_row)
            ef = ef_row.value
        else:
            ef = nonnegative(measured, f"{gas} factor")
        gwp = factors.get("gwp", gas, year)
        used.append(gwp)
        lines.append(
            Line(
                f"process:{gas}",
                output_t * ef / 1000 * gwp.value,
                True,
                {"output": str(output_t), "kg_per_t": str(ef), "gwp": str(gwp.value)},
                tuple(f"{f.table}/{f.key}" for f in used),
                tuple(f"{f.table}/{f.key}" for f in used if f.certainty is Certainty.UNVERIFIED),
            )
        )
    return lines


def total(lines: Iterable[Line], *, count_indirect: bool) -> int:
    """The report's emissions in whole tonnes: direct sources, plus indirect where counted."""
    return half_up(sum((ln.tco2 for ln in lines if ln.direct or count_indirect), ZERO))


# ---------------------------------------------------------------- allocation


class UnitCategory(StrEnum):
    COAL_LARGE = "I"  # conventional coal > 300 MW
    COAL_SMALL = "II"  # conventional coal ≤ 300 MW
    COAL_UNCONVENTIONAL = "III"  # gangue, slime, coal-water slurry, CFB
    GAS = "IV"

    @property
    def heat_key(self) -> str:
        return "gas" if self is UnitCategory.GAS else "coal"


class Cooling(StrEnum):
    WATER = "water"
    AIR = "air"


@dataclass(frozen=True)
class PowerOutput:
    """A generating unit's year: what it generated and supplied, and the heat it delivered."""

    generation_mwh: Decimal
    supply_mwh: Decimal
    heat_gj: Decimal = ZERO
    # 供热比: share of the unit's heat input that went to heat; None: heat was delivered in a
    # month whose record gives no ratio (the supply-basis correction then cannot be worked out)
    heat_ratio: Decimal | None = ZERO
    load_factor: Decimal | None = None  # 负荷率, annual average; None: at or above 85 %


def load_correction(load: Decimal | None) -> Decimal:
    """Coal units below 85 % load: the supply-basis plans' load-factor correction.

    The curve is recalled from 国环规气候〔2020〕3号 (research A1.1 marks it unverified):
    1 at ≥ 85 %; 1 + 0.0014 × (85 − 100F) from 80 %; 1.007 + 0.0016 × (80 − 100F) from 75 %;
    1.015^(16 − 20F) below."""
    if load is None:
        return ONE
    f = fraction(load, "load factor", positive=True)
    pct = f * 100
    if pct >= 85:
        return ONE
    if pct >= 80:
        return ONE + Decimal("0.0014") * (85 - pct)
    if pct >= 75:
        return Decimal("1.007") + Decimal("0.0016") * (80 - pct)
    return Decimal("1.015") ** (16 - 20 * f)


@dataclass(frozen=True)
class Allocation:
    tonnes: int
    parameters: Mapping[str, str]
    unverified: tuple[str, ...] = ()


def power_allocation(
    category: UnitCategory,
    cooling: Cooling,
    output: PowerOutput,
    plan: PlanYear,
    factors: FactorTable,
) -> Allocation:
    """Supply basis (2019–2022): B_supply × supply × F_cool × F_heat × F_load + B_heat × heat.
    Generation basis (from 2023): B_gen × generation × F_load + B_heat × heat; the heat-supply
    correction is gone (research A1.1)."""
    year = plan.year
    nonnegative(output.heat_gj, "heat supplied")
    used: list[Factor] = []

    def get(table: str, key: str) -> Decimal:
        f = factors.get(table, key, year)
        used.append(f)
        return f.value

    coal = category is not UnitCategory.GAS
    f_load = load_correction(output.load_factor) if coal else ONE
    if plan.power_basis is Basis.SUPPLY:
        base = get("benchmark.power.supply", category.value)
        amount = nonnegative(output.supply_mwh, "power supplied")
        f_cool = get("correction.cooling", cooling.value)
        f_heat = ONE
        if coal:
            if output.heat_ratio is None:
                raise Conflict(
                    "HEAT_RATIO_MISSING",
                    "a month with heat supplied has no heat ratio (供热比): the supply-basis "
                    "heat correction needs it",
                    "有供热月份缺少供热比, 无法计算供热量修正系数",
                )
            ratio = fraction(output.heat_ratio, "heat ratio")
            f_heat = ONE - get("correction.heat", "coal_slope") * ratio
        power = base * amount * f_cool * f_heat * f_load
    else:
        base = get("benchmark.power.generation", category.value)
        amount = nonnegative(output.generation_mwh, "generation")
        f_cool = f_heat = ONE
        power = base * amount * f_load
    heat = ZERO
    if output.heat_gj:
        heat = get("benchmark.heat", category.heat_key) * output.heat_gj
    unverified = tuple(f"{f.table}/{f.key}" for f in used if f.certainty is Certainty.UNVERIFIED)
    if coal and f_load != ONE:
        unverified += ("load-correction",)
    return Allocation(
        half_up(power + heat),
        {
            "basis": plan.power_basis.value,
            "benchmark": str(base),
            "output_mwh": str(amount),
            "cooling": str(f_cool),
            "heat_correction": str(f_heat),
            "load_correction": str(f_load),
            "heat_gj": str(output.heat_gj),
        },
        unverified,
    )


def industrial_allocation(
    sector: str,
    plan: PlanYear,
    factors: FactorTable,
    *,
    verified_emissions: int | None,
    output_t: Decimal | None,
) -> Allocation:
    """First year: allocation = verified emissions (排多少、缴多少). Then output × the sector's
    intensity benchmark, whose value is data."""
    if plan.industrial is None:
        raise Conflict(
            "SECTOR_NOT_COVERED",
            f"{sector} is not covered in {plan.year}",
            f"{plan.year} 年 {sector} 行业未纳入",
        )
    if plan.industrial is IndustrialStrategy.EMISSIONS:
        if verified_emissions is None:
            raise Conflict(
                "NOT_VERIFIED", "allocation equals verified emissions: verify first", "需先完成核查"
            )
        return Allocation(verified_emissions, {"strategy": "emissions"})
    if output_t is None:
        raise _bad("OUTPUT_MISSING", "the year's output is needed", "需填报年度产量")
    b = factors.get("benchmark.industrial", sector, plan.year)
    tonnes = half_up(nonnegative(output_t, "output") * b.value)
    return Allocation(
        tonnes,
        {"strategy": "intensity", "benchmark": str(b.value), "output_t": str(output_t)},
        (f"{b.table}/{b.key}",) if b.certainty is Certainty.UNVERIFIED else (),
    )


def pre_allocation(basis: int, plan: PlanYear) -> int:
    """The provisional issue: the plan's share (70 %) of last year's basis, rounded down."""
    if basis < 0:
        raise _bad(
            "ACTIVITY_NEGATIVE", "pre-allocation basis must not be negative", "预分配基数不能为负"
        )
    return round_down(Decimal(basis) * plan.pre_allocation_share)


def true_up(final: int, pre_allocated: int) -> int:
    """Positive: issue the difference; negative: claw it back through the registry."""
    return final - pre_allocated


# ---------------------------------------------------------------- obligation and surrender


class PartKind(StrEnum):
    COAL = "coal"
    GAS = "gas"
    INDUSTRIAL = "industrial"


@dataclass(frozen=True)
class ObligationPart:
    kind: PartKind
    verified: int
    allocation: int


def obligation(parts: Sequence[ObligationPart], plan: PlanYear) -> int:
    """Verified emissions with the plan year's caps: coal parts at most allocation + share ×
    verified (2019–2022: 20 %), gas parts at most their allocation."""
    due = 0
    for p in parts:
        if p.verified < 0 or p.allocation < 0:
            raise _bad(
                "ACTIVITY_NEGATIVE",
                "emissions and allocation must not be negative",
                "排放量与配额不能为负",
            )
        part = p.verified
        if p.kind is PartKind.COAL and plan.coal_cap_share is not None:
            part = min(part, p.allocation + half_up(plan.coal_cap_share * p.verified))
        elif p.kind is PartKind.GAS and plan.gas_capped_at_allocation:
            part = min(part, p.allocation)
        due += part
    return due


def ccer_limit(due: int, plan: PlanYear) -> int:
    """CCER may cover at most the plan's share (5 %) of the allowances due; whole tonnes, down."""
    return round_down(Decimal(due) * plan.ccer_share)


def borrowing_limit(due: int, verified: int, allocation: int, plan: PlanYear) -> int:
    """2021–22: an entity whose gap — what it owes (after the year's caps) less its final
    allocation — exceeds 10 % of its verified emissions may borrow up to half that gap from
    the lending year's allowances; other years none."""
    gap = due - allocation
    if plan.borrow_from is None or plan.borrowing_trigger is None:
        return 0
    if gap <= plan.borrowing_trigger * verified:
        return 0
    return round_down(Decimal(gap) * plan.borrowing_share)


def check_borrowing(quantity: object, limit: int, plan: PlanYear) -> int:
    """A borrowing request: whole tonnes within the entity's limit, in a year that allows it."""
    if plan.borrow_from is None:
        raise Conflict(
            "BORROWING_NOT_ALLOWED",
            f"borrowing is not part of the {plan.year} rules",
            f"{plan.year} 年度不允许预支配额",
        )
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity <= 0:
        raise _bad("QUANTITY_INVALID", "quantity: whole tonnes above 0", "数量须为正整数吨")
    if quantity > limit:
        raise Conflict(
            "BORROWING_LIMIT",
            f"at most {limit} t may be borrowed: half the gap, when the gap exceeds "
            f"{plan.borrowing_trigger:%} of verified emissions",
            f"最多可预支 {limit} 吨",
            limit=limit,
        )
    return quantity


def carry_over_limit(rule: CarryOver, net_sold: int) -> int:
    """Older vintages a year accepts from one entity: base + multiple × its net sales."""
    return rule.base + round_down(Decimal(max(net_sold, 0)) * rule.sales_multiple)


def check_carry_over(limit: int, already: int, quantity: int, rule: CarryOver) -> None:
    if already + quantity > limit:
        raise Conflict(
            "CARRY_OVER_EXCEEDED",
            f"vintages up to {rule.last_old_vintage} may cover at most {limit} t of this year "
            f"({rule.base} t + {rule.sales_multiple} × net sales); {already} t used already",
            f"{rule.last_old_vintage} 年及以前的配额最多可结转 {limit} 吨, 已使用 {already} 吨",
        )


def check_vintage(vintage: int, plan: PlanYear) -> None:
    if not plan.first_vintage <= vintage <= plan.last_vintage:
        raise Conflict(
            "VINTAGE_NOT_ELIGIBLE",
            f"CEA {vintage} cannot be surrendered for {plan.year}: eligible "
            f"{plan.first_vintage}–{plan.last_vintage}",
            f"{vintage} 年度配额不能用于 {plan.year} 年度清缴 (可用 {plan.first_vintage}–"
            f"{plan.last_vintage})",
        )


def check_ccer(due: int, already: int, quantity: int, plan: PlanYear) -> None:
    """At surrender time: this CCER surrender plus earlier ones within the limit."""
    limit = ccer_limit(due, plan)
    if already + quantity > limit:
        raise Conflict(
            "CCER_LIMIT_EXCEEDED",
            f"CCER may cover at most {limit} t ({plan.ccer_share:%} of {due} t); "
            f"{already} t already surrendered",
            f"CCER 抵销不得超过 {limit} t (应清缴量 {due} t 的 {plan.ccer_share:%}), "
            f"已抵销 {already} t",
        )


class ComplianceStatus(StrEnum):
    EXCLUDED = "excluded"
    NOT_VERIFIED = "not-verified"
    COMPLIANT = "compliant"
    IN_DEFICIT = "in-deficit"


def status(*, excluded: bool, verified: bool, due: int, surrendered: int) -> ComplianceStatus:
    """An entity's status for one year follows from its events, nothing stored beside them."""
    if excluded:
        return ComplianceStatus.EXCLUDED
    if not verified:
        return ComplianceStatus.NOT_VERIFIED
    return ComplianceStatus.COMPLIANT if surrendered >= due else ComplianceStatus.IN_DEFICIT


def shortfall(due: int, surrendered: int) -> int:
    return max(0, due - surrendered)


# ---------------------------------------------------------------- penalties

MEASURES_2021_FINE_FEN = (2_000_000, 3_000_000)  # 20,000–30,000 yuan


@dataclass(frozen=True)
class Penalty:
    rule: PenaltyRule
    shortfall: int
    fine_fen: int
    price_fen: int | None
    multiple: Decimal | None
    deduction: int  # tonnes taken from next year's allocation


def penalty(
    plan: PlanYear,
    missing: int,
    *,
    average_price_fen: int | None = None,
    multiple: Decimal = Decimal(5),
    fine_fen: int = MEASURES_2021_FINE_FEN[0],
) -> Penalty:
    """Decree 775 Art. 24: 5–10 × the average price of the month before the deadline × the
    missing tonnes, and the shortfall deducted from next year's allocation. Before it, the
    2021 Measures: a fine of 20,000–30,000 yuan and the same deduction."""
    if missing < 0:
        raise _bad("ACTIVITY_NEGATIVE", "shortfall must not be negative", "缺口不能为负")
    check_penalty_terms(plan, multiple, fine_fen)
    if plan.penalty is PenaltyRule.DECREE_775:
        if average_price_fen is None or average_price_fen <= 0:
            raise _bad(
                "PRICE_MISSING",
                "the average price of the month before the deadline is needed",
                "需提供清缴截止前一个月的平均成交价",
            )
        fine = half_up(Decimal(missing) * average_price_fen * multiple)
        return Penalty(plan.penalty, missing, fine, average_price_fen, multiple, missing)
    return Penalty(plan.penalty, missing, fine_fen if missing else 0, None, None, missing)


def check_penalty_terms(plan: PlanYear, multiple: Decimal, fine_fen: int) -> None:
    """The multiple (Decree 775) or the fine (2021 Measures) within what the rule allows."""
    if plan.penalty is PenaltyRule.DECREE_775:
        if not Decimal(5) <= multiple <= Decimal(10):
            raise _bad(
                "PENALTY_MULTIPLE_OUT_OF_RANGE",
                "Decree 775 sets 5 to 10 times the average price",
                "第 775 号令规定为平均价格的 5 至 10 倍",
            )
        return
    low, high = MEASURES_2021_FINE_FEN
    if not low <= fine_fen <= high:
        raise _bad(
            "PENALTY_FINE_OUT_OF_RANGE",
            "the 2021 Measures set a fine of 20,000 to 30,000 yuan",
            "《碳排放权交易管理办法(试行)》规定罚款 2 万至 3 万元",
        )


def month_before(deadline: date) -> date:
    """The first day of the month that ends at the deadline (Decree 775's "前一个月")."""
    prior = deadline.month - 1 or 12
    y = deadline.year - (deadline.month == 1)
    day = min(deadline.day, days_in_month(y, prior))
    return date(y, prior, day) + timedelta(days=1)


def china_day(at: datetime) -> date:
    """The calendar day in China (Asia/Shanghai) of an instant."""
    return at.astimezone(SHANGHAI).date()


def deduct(next_allocation: int, owed: int) -> tuple[int, int]:
    """Next year's allocation after the deduction, and what is still owed beyond it."""
    taken = min(next_allocation, owed)
    return next_allocation - taken, owed - taken


# ---------------------------------------------------------------- monthly evidence → report


class EvidenceKind(StrEnum):
    """What a monthly record measures, and in which unit."""

    FUEL = "fuel"  # t, or 10^4 Nm3 for gas; item = the fuel
    GENERATION = "generation"  # MWh, per generating unit
    SUPPLY = "supply"  # MWh supplied to the grid, per generating unit
    HEAT = "heat"  # GJ delivered, per generating unit
    PURCHASED_ELECTRICITY = "purchased_electricity"  # MWh
    PURCHASED_HEAT = "purchased_heat"  # GJ
    CLINKER = "clinker"  # t; params cao, mgo
    CARBONATE = "carbonate"  # t; item limestone or dolomite
    CARBON_IN = "carbon_in"  # t; item the material; params carbon
    CARBON_OUT = "carbon_out"  # t; item the product; params carbon
    ANODE = "anode"  # t of net anode consumed; params sulphur, ash
    ALUMINIUM = "aluminium"  # t of liquid aluminium; params cf4_kg_per_t, c2f6_kg_per_t
    OUTPUT = "output"  # t of product, for intensity allocation; item the product


EVIDENCE_PARAMS: Mapping[EvidenceKind, frozenset[str]] = {
    EvidenceKind.FUEL: frozenset({"ncv", "carbon_per_gj", "element_carbon", "oxidation"}),
    EvidenceKind.GENERATION: frozenset({"operating_hours"}),
    EvidenceKind.HEAT: frozenset({"heat_ratio"}),
    EvidenceKind.CLINKER: frozenset({"cao", "mgo"}),
    EvidenceKind.CARBON_IN: frozenset({"carbon"}),
    EvidenceKind.CARBON_OUT: frozenset({"carbon"}),
    EvidenceKind.ANODE: frozenset({"sulphur", "ash"}),
    EvidenceKind.ALUMINIUM: frozenset({"cf4_kg_per_t", "c2f6_kg_per_t"}),
}
REQUIRED_PARAMS: Mapping[EvidenceKind, frozenset[str]] = {
    EvidenceKind.CARBON_IN: frozenset({"carbon"}),
    EvidenceKind.CARBON_OUT: frozenset({"carbon"}),
}
UNIT_SCOPED = frozenset({EvidenceKind.GENERATION, EvidenceKind.SUPPLY, EvidenceKind.HEAT})
ITEM_REQUIRED = frozenset(
    {
        EvidenceKind.FUEL,
        EvidenceKind.CARBONATE,
        EvidenceKind.CARBON_IN,
        EvidenceKind.CARBON_OUT,
        EvidenceKind.OUTPUT,
    }
)


class Evidence(NamedTuple):
    """One monthly record. A named tuple, not a dataclass: a report reads a year of them
    (360 for ten units) and a frozen dataclass costs four times as much to make."""

    kind: EvidenceKind
    month: int
    quantity: Decimal
    item: str = ""
    scope: str = ""  # a generating unit, or "" for the entity as a whole
    params: Mapping[str, Decimal] = MappingProxyType({})


def days_in_month(year: int, month: int) -> int:
    return calendar.monthrange(year, month)[1]


def check_evidence_year(y: int, since: int) -> None:
    """Evidence is kept from the year before coverage: that year's output is the basis of the
    first pre-allocation (as 2018–2020 data were reported before the national market's first
    period). Anything earlier belongs to no allocation and no obligation."""
    if y < since - 1:
        raise Conflict(
            "YEAR_NOT_COVERED",
            f"the entity is covered from {since}: evidence from {since - 1} on",
            f"该主体自 {since} 年起纳入, 数据自 {since - 1} 年起",
            year=y,
        )


def check_evidence(ev: Evidence, year: int, capacity_mw: Decimal | None) -> None:
    """A record on its own: month, non-negative quantity, known parameters, physical limits."""
    if not 1 <= ev.month <= 12:
        raise _bad("MONTH_INVALID", "month must be 1–12", "月份应为 1–12")
    nonnegative(ev.quantity, ev.kind.value)
    allowed = EVIDENCE_PARAMS.get(ev.kind, frozenset())
    unknown = sorted(set(ev.params) - allowed)
    if unknown:
        raise _bad(
            "EVIDENCE_PARAM_UNKNOWN",
            f"{ev.kind.value} records take {sorted(allowed) or 'no parameters'}, not {unknown}",
            f"{ev.kind.value} 记录不接受参数 {unknown}",
        )
    missing = sorted(REQUIRED_PARAMS.get(ev.kind, frozenset()) - set(ev.params))
    if missing:
        raise _bad(
            "EVIDENCE_PARAM_MISSING",
            f"{ev.kind.value} records need {missing}",
            f"{ev.kind.value} 记录须填写 {missing}",
        )
    if ev.kind in ITEM_REQUIRED and not ev.item:
        raise _bad(
            "EVIDENCE_ITEM_MISSING", f"{ev.kind.value} records name their item", "须填写品种"
        )
    if ev.kind in UNIT_SCOPED and capacity_mw is None:
        raise _bad(
            "EVIDENCE_UNIT_MISSING",
            f"{ev.kind.value} is recorded per generating unit",
            "发电量、供电量、供热量须按机组填报",
        )
    hours = days_in_month(year, ev.month) * 24
    if ev.kind in (EvidenceKind.GENERATION, EvidenceKind.SUPPLY) and capacity_mw is not None:
        check_generation(ev.quantity, capacity_mw, hours)
    if "operating_hours" in ev.params and not ev.params["operating_hours"] <= hours:
        raise _bad(
            "HOURS_OUT_OF_RANGE",
            f"operating hours exceed the {hours} hours of the month",
            f"运行小时数超过当月 {hours} 小时",
        )
    if "heat_ratio" in ev.params:
        fraction(ev.params["heat_ratio"], "heat ratio")


def evidence_lines(records: Iterable[Evidence], year: int, factors: FactorTable) -> list[Line]:
    """The year's emission sources, record by record (each month with its own measured
    parameters, as the guideline computes), then summed per source."""
    lines: list[Line] = []
    for ev in records:
        p = ev.params
        k = ev.kind
        if k is EvidenceKind.FUEL:
            use = FuelUse(
                ev.item,
                ev.quantity,
                ncv=p.get("ncv"),
                carbon_per_gj=p.get("carbon_per_gj"),
                element_carbon=p.get("element_carbon"),
                oxidation=p.get("oxidation"),
            )
            lines.append(combustion(use, year, factors))
        elif k is EvidenceKind.PURCHASED_ELECTRICITY:
            lines.append(purchased_electricity(ev.quantity, year, factors))
        elif k is EvidenceKind.PURCHASED_HEAT:
            lines.append(purchased_heat(ev.quantity, year, factors))
        elif k is EvidenceKind.CLINKER:
            lines.append(clinker(ev.quantity, year, factors, cao=p.get("cao"), mgo=p.get("mgo")))
        elif k is EvidenceKind.CARBONATE:
            lines.append(carbonates(ev.item, ev.quantity, year, factors))
        elif k in (EvidenceKind.CARBON_IN, EvidenceKind.CARBON_OUT):
            c = ev.quantity * fraction(p["carbon"], f"{ev.item} carbon")
            sign = 1 if k is EvidenceKind.CARBON_IN else -1
            lines.append(Line("process:carbon-balance", sign * c * C_TO_CO2, True))
        elif k is EvidenceKind.ANODE:
            lines.append(anode(ev.quantity, sulphur=p.get("sulphur", ZERO), ash=p.get("ash", ZERO)))
        elif k is EvidenceKind.ALUMINIUM:
            lines.extend(
                pfcs(
                    ev.quantity,
                    year,
                    factors,
                    cf4_kg_per_t=p.get("cf4_kg_per_t"),
                    c2f6_kg_per_t=p.get("c2f6_kg_per_t"),
                )
            )
    return summed(lines)


def summed(lines: Iterable[Line]) -> list[Line]:
    """One line per source: tonnes added up, defaults and flags merged."""
    by: dict[str, Line] = {}
    for ln in lines:
        prior = by.get(ln.source)
        if prior is None:
            by[ln.source] = Line(ln.source, ln.tco2, ln.direct, {}, ln.defaults, ln.unverified)
        else:
            by[ln.source] = Line(
                ln.source,
                prior.tco2 + ln.tco2,
                ln.direct,
                {},
                tuple(dict.fromkeys(prior.defaults + ln.defaults)),
                tuple(dict.fromkeys(prior.unverified + ln.unverified)),
            )
    if "process:carbon-balance" in by and by["process:carbon-balance"].tco2 < 0:
        raise _bad(
            "CARBON_BALANCE_NEGATIVE",
            "more carbon leaves the works than enters it over the year",
            "全年输出碳量大于输入碳量",
        )
    return sorted(by.values(), key=lambda ln: ln.source)


def unit_output(records: Iterable[Evidence], unit_id: str, capacity_mw: Decimal) -> PowerOutput:
    """A generating unit's year from its monthly records. The heat ratio is the heat-weighted
    mean of the months' ratios (None if a month with heat gives none: never taken as 0); the
    load factor is generation ÷ (capacity × operating hours),
    and only when every month with generation gives its operating hours (else no correction)."""
    gen = sup = heat = weighted = hours = ZERO
    all_hours = every_ratio = True
    for ev in records:
        if ev.scope != unit_id:
            continue
        if ev.kind is EvidenceKind.GENERATION:
            gen += ev.quantity
            if "operating_hours" in ev.params:
                hours += ev.params["operating_hours"]
            elif ev.quantity:
                all_hours = False
        elif ev.kind is EvidenceKind.SUPPLY:
            sup += ev.quantity
        elif ev.kind is EvidenceKind.HEAT:
            heat += ev.quantity
            if "heat_ratio" in ev.params:
                weighted += ev.quantity * ev.params["heat_ratio"]
            elif ev.quantity:
                every_ratio = False
    load = gen / (capacity_mw * hours) if all_hours and hours and gen else None
    ratio = (weighted / heat if every_ratio else None) if heat else ZERO
    return PowerOutput(gen, sup, heat, ratio, min(load, ONE) if load is not None else None)


# ---------------------------------------------------------------- the report's workflow


class ReportStatus(StrEnum):
    DRAFT = "DRAFT"
    SUBMITTED = "SUBMITTED"
    UNDER_VERIFICATION = "UNDER_VERIFICATION"
    VERIFIED = "VERIFIED"
    RETURNED = "RETURNED"
    CONFIRMED = "CONFIRMED"


class ReportAction(StrEnum):
    SUBMIT = "submit"  # the entity
    ASSIGN = "assign"  # the operator names a verifier
    VERIFY = "verify"  # the verifier signs off
    RETURN = "return"  # the verifier or the operator sends it back with reasons
    CONFIRM = "confirm"  # the operator confirms the verified figure


_S = ReportStatus
_A = ReportAction
REPORT_FLOW: Mapping[tuple[ReportStatus, ReportAction], ReportStatus] = {
    (_S.DRAFT, _A.SUBMIT): _S.SUBMITTED,
    (_S.RETURNED, _A.SUBMIT): _S.SUBMITTED,
    (_S.SUBMITTED, _A.ASSIGN): _S.UNDER_VERIFICATION,
    (_S.SUBMITTED, _A.RETURN): _S.RETURNED,
    (_S.UNDER_VERIFICATION, _A.VERIFY): _S.VERIFIED,
    (_S.UNDER_VERIFICATION, _A.RETURN): _S.RETURNED,
    (_S.VERIFIED, _A.CONFIRM): _S.CONFIRMED,
    (_S.VERIFIED, _A.RETURN): _S.RETURNED,
}
EDITABLE = frozenset({ReportStatus.DRAFT, ReportStatus.RETURNED})


def next_status(current: ReportStatus, action: ReportAction) -> ReportStatus:
    nxt = REPORT_FLOW.get((current, action))
    if nxt is None:
        raise Conflict(
            "REPORT_STATE",
            f"a {current.value} report cannot be {action.value}ed",
            f"状态为 {current.value} 的报告不能执行 {action.value}",
            status=current.value,
        )
    return nxt


def check_verifier(verifier_entity: str, verifier_kind: str, reporting_entity: str) -> None:
    """Conflict of interest: a verifier is a verification body, never the reporting entity."""
    if verifier_entity == reporting_entity:
        raise Conflict(
            "VERIFIER_CONFLICT", "an entity cannot verify its own report", "主体不能核查自身的报告"
        )
    if verifier_kind != "verifier":
        raise Conflict(
            "NOT_A_VERIFIER",
            "only a verification body can be assigned",
            "只能指派核查机构",
        )
