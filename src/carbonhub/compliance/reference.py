"""Reference data of the compliance cycle: factors, benchmarks and plan-year rules.

Every value carries its source and how sure we are of it, in the words of
`research/mrv-inclusion-anchors.md`: VERIFIED (a retrieved source, or two, or one plus an
arithmetic check), SECONDARY (one secondary source), UNVERIFIED (from a weak source, or a
standard default recalled from the guideline or IPCC table its source names: every use of one
is flagged in the report or allocation that used it, and an operator should check it against
the official text and enter the confirmed value). A value with no source at all is not here:
asking for it is FACTOR_MISSING, never a guess.

Two grid-factor series are kept apart (DESIGN §7): `grid.ets` is what the ETS reporting rules
prescribe for purchased electricity; `grid.statistical` is the MEE/NBS national average, for
other uses (finance, inclusion). Accounting reads only the first.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal
from enum import StrEnum


class Certainty(StrEnum):
    VERIFIED = "verified"
    SECONDARY = "secondary"
    UNVERIFIED = "unverified"


@dataclass(frozen=True)
class Factor:
    """One value of a versioned table, valid for plan or reporting years `first`..`last`."""

    table: str
    key: str
    first: int
    last: int | None  # inclusive; None: until a later row replaces it
    value: Decimal
    unit: str
    source: str
    certainty: Certainty

    def covers(self, year: int) -> bool:
        return self.first <= year and (self.last is None or year <= self.last)


V, S, U = Certainty.VERIFIED, Certainty.SECONDARY, Certainty.UNVERIFIED

_ICAP_731 = "ICAP node/731 (final plan table, Nov 2020); LGR2/LGRblog ChineseETSredraft.md"
_LGR_2122 = (
    "LGR2/LGRblog ChineseETSredraft.md; ICAP: coal benchmarks fell 6.29 %–18.41 % "
    "(0.8218/0.877 and 0.935/1.146 check)"
)
_STOICH = "stoichiometry, IUPAC molar masses: CO2 44.0095, CaCO3 100.0869, CaO 56.0774"


def _f(
    table: str,
    key: str,
    first: int,
    last: int | None,
    value: str,
    unit: str,
    source: str,
    certainty: Certainty,
) -> Factor:
    return Factor(table, key, first, last, Decimal(value), unit, source, certainty)


FACTORS: tuple[Factor, ...] = (
    # ---- power benchmarks, supply basis (供电基准值), tCO2/MWh: research A1.1
    _f("benchmark.power.supply", "I", 2019, 2020, "0.877", "tCO2/MWh", _ICAP_731, V),
    _f("benchmark.power.supply", "II", 2019, 2020, "0.979", "tCO2/MWh", _ICAP_731, V),
    _f("benchmark.power.supply", "III", 2019, 2020, "1.146", "tCO2/MWh", _ICAP_731, V),
    _f("benchmark.power.supply", "IV", 2019, 2020, "0.392", "tCO2/MWh", _ICAP_731, V),
    _f("benchmark.power.supply", "I", 2021, 2021, "0.8218", "tCO2/MWh", _LGR_2122, V),
    _f("benchmark.power.supply", "II", 2021, 2021, "0.8773", "tCO2/MWh", _LGR_2122, V),
    _f("benchmark.power.supply", "III", 2021, 2021, "0.9350", "tCO2/MWh", _LGR_2122, V),
    _f("benchmark.power.supply", "IV", 2021, 2021, "0.3920", "tCO2/MWh", _LGR_2122, V),
    _f("benchmark.power.supply", "I", 2022, 2022, "0.8177", "tCO2/MWh", _LGR_2122, V),
    _f("benchmark.power.supply", "II", 2022, 2022, "0.8729", "tCO2/MWh", _LGR_2122, V),
    _f("benchmark.power.supply", "III", 2022, 2022, "0.9303", "tCO2/MWh", _LGR_2122, V),
    _f("benchmark.power.supply", "IV", 2022, 2022, "0.3901", "tCO2/MWh", _LGR_2122, V),
    # ---- heat benchmarks (供热基准值), tCO2/GJ: coal for categories I–III, gas for IV
    _f("benchmark.heat", "coal", 2019, 2020, "0.126", "tCO2/GJ", _ICAP_731, V),
    _f("benchmark.heat", "gas", 2019, 2020, "0.059", "tCO2/GJ", _ICAP_731, V),
    _f("benchmark.heat", "coal", 2021, 2021, "0.1111", "tCO2/GJ", _LGR_2122, V),
    _f("benchmark.heat", "gas", 2021, 2021, "0.0560", "tCO2/GJ", _LGR_2122, V),
    _f("benchmark.heat", "coal", 2022, 2022, "0.1105", "tCO2/GJ", _LGR_2122, V),
    _f("benchmark.heat", "gas", 2022, 2022, "0.0557", "tCO2/GJ", _LGR_2122, V),
    # ---- power benchmarks, generation basis (发电基准值) from the 2023–2024 plan
    _f(
        "benchmark.power.generation",
        "II",
        2024,
        2024,
        "0.8049",
        "tCO2/MWh",
        "parameter evidence ledger citing MEE plan PDF W020241021392230468687.pdf "
        "(国环规气候〔2024〕1号); single secondary source",
        S,
    ),
    # ---- correction factors of the supply-basis plans (research A1.1: structure V, values U)
    _f(
        "correction.cooling",
        "air",
        2019,
        2022,
        "1.05",
        "factor",
        "recalled from 国环规气候〔2020〕3号; check the plan's annex",
        U,
    ),
    _f("correction.cooling", "water", 2019, None, "1", "factor", "neutral value", V),
    _f(
        "correction.heat",
        "coal_slope",
        2019,
        2022,
        "0.22",
        "1 − slope × heat ratio",
        "recalled from 国环规气候〔2020〕3号; check the plan's annex",
        U,
    ),
    # ---- purchased electricity and heat: the ETS reporting series (tCO2/MWh, tCO2/GJ)
    _f(
        "grid.ets",
        "national",
        2019,
        2021,
        "0.6101",
        "tCO2/MWh",
        "企业温室气体排放核算与报告指南 发电设施 (2021), via v-calling.com",
        V,
    ),
    _f(
        "grid.ets",
        "national",
        2022,
        None,
        "0.5703",
        "tCO2/MWh",
        "2022年度全国电网平均排放因子, MEE notice of Feb 2023 on 2023–2025 reporting "
        "(tanpaifang.com/tanguwen/2023/0215/94510.html)",
        V,
    ),
    _f(
        "heat.ets",
        "purchased",
        2019,
        None,
        "0.11",
        "tCO2/GJ",
        "default for purchased heat in the national accounting guidelines, recalled",
        U,
    ),
    # ---- the statistical series (MEE + NBS), never used for ETS accounting
    _f("grid.statistical", "national", 2021, 2021, "0.5568", "tCO2/MWh", "MEE/NBS 2024年第12号", V),
    _f("grid.statistical", "national", 2022, 2022, "0.5366", "tCO2/MWh", "MEE/NBS, Dec 2024", V),
    _f("grid.statistical", "national", 2023, 2023, "0.5306", "tCO2/MWh", "MEE/NBS, Dec 2025", V),
    _f("grid.statistical", "central", 2022, 2022, "0.5395", "tCO2/MWh", "新京报 (华中)", V),
    _f("grid.statistical", "central", 2023, 2023, "0.5271", "tCO2/MWh", "光明日报 (华中)", V),
    # ---- default fuel parameters, used only where the entity measured nothing (higher defaults)
    _f(
        "fuel.ncv",
        "natural_gas",
        2019,
        None,
        "389.31",
        "GJ/10^4 Nm3",
        "GB/T 32150 appendix as seen in a public fixture; check the standard",
        U,
    ),
    _f(
        "fuel.carbon",
        "natural_gas",
        2019,
        None,
        "0.0153",
        "tC/GJ",
        "GB/T 32150 appendix (15.3 tC/TJ) as seen in a public fixture; check the standard",
        U,
    ),
    _f(
        "fuel.oxidation",
        "natural_gas",
        2019,
        None,
        "0.99",
        "fraction",
        "24-sector guidelines (99–99.5 %), lower end; check the standard",
        U,
    ),
    _f(
        "fuel.carbon",
        "coal",
        2019,
        None,
        "0.03356",
        "tC/GJ",
        "default of the 2021 power-facility guideline, recalled; research A2.1 marks it U",
        U,
    ),
    _f(
        "fuel.oxidation",
        "coal",
        2019,
        None,
        "0.99",
        "fraction",
        "default of the 2021 power-facility guideline, recalled; research A2.1 marks it U",
        U,
    ),
    # ---- process emissions
    _f("carbonate", "limestone", 2019, None, "0.43971", "tCO2/t CaCO3", _STOICH, V),
    _f(
        "carbonate",
        "dolomite",
        2019,
        None,
        "0.47732",
        "tCO2/t CaMg(CO3)2",
        "stoichiometry: 2 × 44.0095 / 184.4008",
        V,
    ),
    _f("oxide", "CaO", 2019, None, "0.78480", "tCO2/t CaO", _STOICH, V),
    _f("oxide", "MgO", 2019, None, "1.09193", "tCO2/t MgO", "stoichiometry: 44.0095 / 40.3044", V),
    _f(
        "clinker",
        "default",
        2019,
        None,
        "0.52",
        "tCO2/t clinker",
        "IPCC 2006 Vol. 3 Eq. 2.4 default (65 % CaO), recalled",
        U,
    ),
    _f(
        "pfc.cf4",
        "prebake",
        2019,
        None,
        "0.4",
        "kg CF4/t Al",
        "IPCC 2006 Vol. 3 Table 4.15 Tier 1 (CWPB), recalled",
        U,
    ),
    _f(
        "pfc.c2f6",
        "prebake",
        2019,
        None,
        "0.04",
        "kg C2F6/t Al",
        "IPCC 2006 Vol. 3 Table 4.15 Tier 1 (CWPB), recalled",
        U,
    ),
    _f("gwp", "CF4", 2019, None, "6630", "tCO2e/t", "IPCC AR5 WG1 Table 8.A.1, recalled", U),
    _f("gwp", "C2F6", 2019, None, "11100", "tCO2e/t", "IPCC AR5 WG1 Table 8.A.1, recalled", U),
    # ---- industrial intensity benchmarks (2025 plan's table not retrieved)
    _f(
        "benchmark.industrial",
        "cement",
        2025,
        None,
        "0.8534",
        "tCO2/t clinker",
        "NDRC 2017 discussion draft (zuoguai.cn mirror), reference only until the 2025 "
        "plan's table is entered",
        U,
    ),
)


class Basis(StrEnum):
    SUPPLY = "supply"  # 供电量: net power supplied, 2019–2022
    GENERATION = "generation"  # 发电量: gross generation, from 2023


class IndustrialStrategy(StrEnum):
    EMISSIONS = "emissions"  # 排多少、缴多少: allocation = verified emissions
    INTENSITY = "intensity"  # output × benchmark


class PenaltyRule(StrEnum):
    MEASURES_2021 = "measures-2021"  # 《碳排放权交易管理办法(试行)》: 20,000–30,000 yuan
    DECREE_775 = "decree-775"  # State Council Decree 775 Art. 24: 5–10 × last month's price


@dataclass(frozen=True)
class CarryOver:
    """Banking into a year: older vintages count for it only up to base + multiple × the
    entity's net allowances sold over the sales years (the 2023–24 plan's rule for 2025)."""

    last_old_vintage: int
    base: int
    sales_multiple: Decimal
    sales_from: int
    sales_to: int


@dataclass(frozen=True)
class PlanYear:
    """The rules of one compliance year; a change of rule is a new row, never a code fork.
    The defaults are what every national plan so far has in common."""

    year: int
    power_basis: Basis
    count_indirect: bool  # purchased electricity and heat in the power sector's obligation
    coal_cap_share: Decimal | None  # obligation ≤ allocation + share × verified; None: no cap
    last_vintage: int  # the newest CEA vintage that may be surrendered
    industrial: IndustrialStrategy | None  # None: industrial sectors not yet covered
    deadline: str | None  # ISO date of full surrender; None: not published (or not found)
    penalty: PenaltyRule
    source: str
    certainty: Certainty
    notes: str = ""
    gas_capped_at_allocation: bool = True
    ccer_share: Decimal = Decimal("0.05")  # CCER ≤ share × the obligation
    pre_allocation_share: Decimal = Decimal("0.70")
    borrowing_trigger: Decimal | None = None  # borrowing allowed when gap > trigger × verified
    borrowing_share: Decimal = Decimal(0)  # … up to this share of the gap
    first_vintage: int = 2019  # the oldest CEA vintage that may be surrendered
    borrow_from: int | None = None  # whose allowances are lent (and repaid from its allocation)
    carry_over: CarryOver | None = None  # a limit on older vintages surrendered for the year


_2019 = PlanYear(
    2019,
    Basis.SUPPLY,
    count_indirect=True,
    coal_cap_share=Decimal("0.20"),
    last_vintage=2020,
    industrial=None,
    deadline="2021-12-31",
    penalty=PenaltyRule.MEASURES_2021,
    source="ICAP news-archive/804; climatecooperation.cn; MEE notice 2021-10-26",
    certainty=V,
)
_2021 = replace(
    _2019,
    year=2021,
    last_vintage=2022,
    deadline="2023-12-31",
    borrowing_trigger=Decimal("0.10"),
    borrowing_share=Decimal("0.50"),
    borrow_from=2023,
    source="ICAP china-releases-allocation-plan-and-compliance-arrangements-2021-and-2022; "
    "climatecooperation.cn (borrowing 2021–22 only)",
)
_2023 = PlanYear(
    2023,
    Basis.GENERATION,
    count_indirect=False,
    coal_cap_share=None,
    last_vintage=2023,
    industrial=None,
    deadline="2024-12-31",
    penalty=PenaltyRule.DECREE_775,
    source="ICAP china-releases-allocation-plan-power-sector-2023-and-2024 (国环规气候〔2024〕1号)",
    certainty=S,
    notes="the 20 % shortfall cap is not confirmed for 2023–24 (research A1.2): none applied",
)
PLAN_YEARS: tuple[PlanYear, ...] = (
    _2019,
    replace(_2019, year=2020),
    _2021,
    replace(_2021, year=2022),
    _2023,
    replace(
        _2023,
        year=2024,
        last_vintage=2024,
        industrial=IndustrialStrategy.EMISSIONS,
        deadline="2025-12-31",
        source="ICAP 2023–24 power plan; ICAP 2024–2025 industrial allocation plan",
        notes="2024 deadline unverified (research A1.2); steel, cement, aluminium: allocation = "
        "verified emissions in their first year",
    ),
    replace(
        _2023,
        year=2025,
        last_vintage=2025,
        industrial=IndustrialStrategy.INTENSITY,
        deadline=None,
        source="ICAP 2024–2025 industrial allocation plan (intensity from 2025, 70 % "
        "pre-allocation)",
        certainty=U,
        notes="power benchmarks for 2025 and the deadline not retrieved; carry-over of 2019–2024 "
        "vintages: 10,000 t + 1.5 × net sales 2019–2024 (ICAP 2023–24 final plan page, verified)",
        carry_over=CarryOver(
            last_old_vintage=2024,
            base=10_000,
            sales_multiple=Decimal("1.5"),
            sales_from=2019,
            sales_to=2024,
        ),
    ),
)
