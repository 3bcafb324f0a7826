"""Pure compliance rules (carbonhub.compliance.model): golden figures and properties.

Expected values are worked out here with Fraction or by hand from the published figures, not
with the functions under test.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carbonhub.compliance import model as m
from carbonhub.compliance.reference import FACTORS, PLAN_YEARS, Certainty, Factor, PlanYear
from carbonhub.core.errors import Conflict, DomainError, InvalidInput, NotFound

F = m.FactorTable()
D = Decimal
P2021, P2022, P2023 = m.plan_year(2021), m.plan_year(2022), m.plan_year(2023)


def close(got: Decimal, want: Fraction) -> bool:
    """Decimal arithmetic (28 digits) against exact fractions: equal to far below a gram."""
    return abs(Fraction(got) - want) < Fraction(1, 10**12)


def code_of(exc: pytest.ExceptionInfo[DomainError]) -> str:
    return exc.value.code


# ---------------------------------------------------------------- reference data


def test_every_factor_names_its_source_and_certainty() -> None:
    for f in FACTORS:
        assert f.source.strip() and f.unit.strip(), f
        assert isinstance(f.certainty, Certainty)
        assert f.value > 0 or f.table.startswith("correction"), f
    for p in PLAN_YEARS:
        assert p.source.strip()


def test_no_two_rows_of_one_table_overlap() -> None:
    seen: dict[tuple[str, str], list[Factor]] = {}
    for f in FACTORS:
        for g in seen.get((f.table, f.key), []):
            last_f = f.last if f.last is not None else 9999
            last_g = g.last if g.last is not None else 9999
            assert last_f < g.first or last_g < f.first, (f, g)
        seen.setdefault((f.table, f.key), []).append(f)


def test_2021_benchmarks_fell_as_icap_reported() -> None:
    """ICAP: coal benchmarks fell by 6.29 % (> 300 MW) to 18.41 % (unconventional)."""
    old_i = F.value("benchmark.power.supply", "I", 2020)
    new_i = F.value("benchmark.power.supply", "I", 2021)
    old_iii = F.value("benchmark.power.supply", "III", 2020)
    new_iii = F.value("benchmark.power.supply", "III", 2021)
    assert round((1 - new_i / old_i) * 100, 2) == D("6.29")
    assert round((1 - new_iii / old_iii) * 100, 2) == D("18.41")


def test_2022_benchmarks_are_the_published_table() -> None:
    got = {c: F.value("benchmark.power.supply", c, 2022) for c in ("I", "II", "III", "IV")}
    assert got == {"I": D("0.8177"), "II": D("0.8729"), "III": D("0.9303"), "IV": D("0.3901")}
    assert F.value("benchmark.heat", "coal", 2022) == D("0.1105")
    assert F.value("benchmark.heat", "gas", 2022) == D("0.0557")


def test_stoichiometric_factors_match_the_molar_masses() -> None:
    co2, caco3, cao, mgo = (Fraction(x) for x in ("44.0095", "100.0869", "56.0774", "40.3044"))
    dolomite = Fraction("184.4008")
    assert F.value("carbonate", "limestone", 2024) == D(f"{float(co2 / caco3):.5f}")
    assert F.value("carbonate", "dolomite", 2024) == D(f"{float(2 * co2 / dolomite):.5f}")
    assert F.value("oxide", "CaO", 2024) == D(f"{float(co2 / cao):.5f}")
    assert F.value("oxide", "MgO", 2024) == D(f"{float(co2 / mgo):.5f}")


def test_a_missing_value_is_refused_not_guessed() -> None:
    with pytest.raises(NotFound) as exc:
        F.get("benchmark.power.generation", "I", 2023)
    assert code_of(exc) == "FACTOR_MISSING"
    assert exc.value.context == {"table": "benchmark.power.generation", "key": "I", "year": 2023}
    with pytest.raises(NotFound) as exc:
        m.plan_year(2018)
    assert code_of(exc) == "PLAN_YEAR_UNKNOWN"


def test_a_later_row_amends_an_earlier_one() -> None:
    corrected = Factor(
        "benchmark.power.generation",
        "II",
        2024,
        2024,
        D("0.8050"),
        "tCO2/MWh",
        "official",
        Certainty.VERIFIED,
    )
    table = m.FactorTable((*FACTORS, corrected))
    assert table.get("benchmark.power.generation", "II", 2024) is corrected
    assert F.value("benchmark.power.generation", "II", 2024) == D("0.8049")


# ---------------------------------------------------------------- emissions


def test_coal_with_measured_element_carbon() -> None:
    """CC = element carbon / NCV, so E = t × element carbon × OF × 44/12; OF from the default."""
    line = m.combustion(
        m.FuelUse("bituminous_coal", D(100_000), ncv=D("20.9"), element_carbon=D("0.55")), 2022, F
    )
    want = Fraction(100_000) * Fraction("0.55") * Fraction("0.99") * Fraction(44, 12)
    assert close(line.tco2, want)
    assert m.half_up(line.tco2) == 199_650
    assert line.defaults == ("fuel.oxidation/coal",)
    assert line.unverified == ("fuel.oxidation/coal",)


def test_gas_on_defaults_only() -> None:
    line = m.combustion(m.FuelUse("natural_gas", D(1_000)), 2023, F)
    want = (
        Fraction(1_000)
        * Fraction("389.31")
        * Fraction("0.0153")
        * Fraction("0.99")
        * Fraction(44, 12)
    )
    assert close(line.tco2, want)
    assert set(line.defaults) == {
        "fuel.ncv/natural_gas",
        "fuel.carbon/natural_gas",
        "fuel.oxidation/natural_gas",
    }


def test_measured_values_win_over_defaults() -> None:
    line = m.combustion(
        m.FuelUse(
            "natural_gas", D(10), ncv=D(380), carbon_per_gj=D("0.0150"), oxidation=D("0.995")
        ),
        2023,
        F,
    )
    assert line.defaults == ()
    assert line.tco2 == D(10) * D(380) * D("0.0150") * D("0.995") * m.C_TO_CO2


def test_coal_without_a_measured_ncv_is_refused() -> None:
    with pytest.raises(NotFound) as exc:
        m.combustion(m.FuelUse("coal", D(1_000)), 2022, F)
    assert code_of(exc) == "FACTOR_MISSING"


@pytest.mark.parametrize(
    ("use", "code"),
    [
        (m.FuelUse("coal", D(-1), ncv=D(20)), "ACTIVITY_NEGATIVE"),
        (m.FuelUse("coal", D(1), ncv=D(209)), "NCV_OUT_OF_RANGE"),  # kJ/kg typed as GJ/t
        (m.FuelUse("natural_gas", D(1), ncv=D("38.931")), "NCV_OUT_OF_RANGE"),  # per Nm3
        (m.FuelUse("coal", D(1), ncv=D(20), element_carbon=D("1.2")), "FRACTION_OUT_OF_RANGE"),
        (m.FuelUse("coal", D(1), ncv=D(20), oxidation=D(0)), "FRACTION_OUT_OF_RANGE"),
        (m.FuelUse("coal", D("NaN"), ncv=D(20)), "ACTIVITY_NEGATIVE"),
    ],
)
def test_absurd_activity_data_is_refused(use: m.FuelUse, code: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        m.combustion(use, 2022, F)
    assert code_of(exc) == code


def test_generation_above_capacity_times_hours() -> None:
    m.check_generation(D(600 * 8760), D(600), 8760)
    with pytest.raises(InvalidInput) as exc:
        m.check_generation(D(600 * 8760 + 1), D(600), 8760)
    assert code_of(exc) == "GENERATION_ABOVE_CAPACITY"


def test_purchased_electricity_uses_the_ets_series_only() -> None:
    assert m.purchased_electricity(D(1_000), 2021, F).tco2 == D("610.1")
    assert m.purchased_electricity(D(1_000), 2022, F).tco2 == D("570.3")  # not 536.6
    assert F.value("grid.statistical", "national", 2022) == D("0.5366")
    assert not m.purchased_electricity(D(1), 2022, F).direct


def test_indirect_emissions_count_only_where_the_plan_says() -> None:
    lines = [
        m.combustion(m.FuelUse("coal", D(1_000), ncv=D(20), carbon_per_gj=D("0.026")), 2023, F),
        m.purchased_electricity(D(10_000), 2023, F),
    ]
    direct = Fraction(1_000 * 20) * Fraction("0.026") * Fraction("0.99") * Fraction(44, 12)
    assert P2022.count_indirect and not P2023.count_indirect
    assert m.total(lines, count_indirect=False) == round(direct)
    assert m.total(lines, count_indirect=True) == round(direct + 5_703)


def test_clinker_from_measured_oxides() -> None:
    line = m.clinker(D(1_000_000), 2024, F, cao=D("0.65"), mgo=D("0.02"))
    want = 1_000_000 * (
        Fraction("0.65") * Fraction("0.78480") + Fraction("0.02") * Fraction("1.09193")
    )
    assert Fraction(line.tco2) == want
    default = m.clinker(D(1_000), 2024, F)
    assert default.tco2 == D(520) and default.unverified == ("clinker/default",)
    with pytest.raises(InvalidInput) as exc:
        m.clinker(D(1_000), 2024, F, cao=D("0.65"))
    assert code_of(exc) == "OXIDES_INCOMPLETE"


def test_steel_carbon_balance() -> None:
    """(carbon in − carbon out) × 44/12 over the year's records; carbon leaving in products is
    not emitted, and a year in which more leaves than enters is refused."""

    def flow(kind: m.EvidenceKind, month: int, item: str, t: int, carbon: str) -> m.Evidence:
        return m.Evidence(kind, month, D(t), item, "", {"carbon": D(carbon)})

    coke = flow(m.EvidenceKind.CARBON_IN, 1, "coke", 400_000, "0.85")
    pci = flow(m.EvidenceKind.CARBON_IN, 1, "pci coal", 150_000, "0.75")
    steel = flow(m.EvidenceKind.CARBON_OUT, 1, "crude steel", 1_000_000, "0.002")
    (line,) = m.evidence_lines([coke, pci, steel], 2024, F)
    c = 400_000 * Fraction("0.85") + 150_000 * Fraction("0.75") - 1_000_000 * Fraction("0.002")
    assert line.source == "process:carbon-balance" and close(line.tco2, c * Fraction(44, 12))
    assert m.carbonates("limestone", D(100), 2024, F).tco2 == D("43.97100")
    with pytest.raises(InvalidInput) as exc:
        m.evidence_lines([steel], 2024, F)
    assert code_of(exc) == "CARBON_BALANCE_NEGATIVE"


def test_aluminium_anode_and_pfcs() -> None:
    assert m.half_up(m.anode(D(40_000), sulphur=D("0.02"), ash=D("0.005")).tco2) == 143_000
    by = {ln.source: m.half_up(ln.tco2) for ln in m.pfcs(D(100_000), 2024, F)}
    assert by == {"process:CF4": 265_200, "process:C2F6": 44_400}  # 0.4 × 6,630; 0.04 × 11,100
    measured = m.pfcs(D(100_000), 2024, F, cf4_kg_per_t=D("0.03"), c2f6_kg_per_t=D("0.003"))
    assert [m.half_up(ln.tco2) for ln in measured] == [19_890, 3_330]
    assert measured[0].unverified == ("gwp/CF4",)
    with pytest.raises(InvalidInput):
        m.anode(D(1), sulphur=D("0.6"), ash=D("0.5"))


# ---------------------------------------------------------------- allocation


def test_2021_coal_unit_supply_basis() -> None:
    out = m.PowerOutput(generation_mwh=D(1_080_000), supply_mwh=D(1_000_000), heat_gj=D(100_000))
    a = m.power_allocation(m.UnitCategory.COAL_LARGE, m.Cooling.WATER, out, P2021, F)
    assert a.tonnes == 821_800 + 11_110  # 0.8218 × 1,000,000 + 0.1111 × 100,000
    assert a.unverified == ("correction.heat/coal_slope",)


def test_2022_gas_unit_has_no_coal_corrections() -> None:
    out = m.PowerOutput(
        D(520_000), D(500_000), heat_gj=D(50_000), heat_ratio=D("0.3"), load_factor=D("0.5")
    )
    a = m.power_allocation(m.UnitCategory.GAS, m.Cooling.WATER, out, P2022, F)
    assert a.tonnes == 195_050 + 2_785  # 0.3901 × 500,000 + 0.0557 × 50,000
    assert a.parameters["load_correction"] == "1"


def test_supply_basis_corrections_multiply() -> None:
    out = m.PowerOutput(D(0), D(1_000_000), heat_ratio=D("0.1"), load_factor=D("0.80"))
    a = m.power_allocation(m.UnitCategory.COAL_SMALL, m.Cooling.AIR, out, P2021, F)
    want = (
        Fraction("0.8773") * 1_000_000 * Fraction("1.05") * (1 - Fraction("0.22") * Fraction("0.1"))
    )
    want *= Fraction("1.007")
    assert a.tonnes == round(want)
    assert "correction.cooling/air" in a.unverified and "load-correction" in a.unverified


def test_a_supply_basis_coal_unit_needs_the_ratio_of_every_month_with_heat() -> None:
    """A month of heat without its ratio is not a ratio of 0: the supply-basis correction cannot
    be worked out, and the allocation is refused (the run skips the entity with the reason)."""
    unit = "U1"
    months = [
        m.Evidence(m.EvidenceKind.SUPPLY, 1, D(500_000), scope=unit),
        m.Evidence(m.EvidenceKind.HEAT, 1, D(60_000), scope=unit, params={"heat_ratio": D("0.2")}),
        m.Evidence(m.EvidenceKind.HEAT, 2, D(40_000), scope=unit),
    ]
    out = m.unit_output(months, unit, D(600))
    assert out.heat_ratio is None and out.heat_gj == 100_000
    with pytest.raises(Conflict) as refused:
        m.power_allocation(m.UnitCategory.COAL_LARGE, m.Cooling.WATER, out, P2021, F)
    assert refused.value.code == "HEAT_RATIO_MISSING"
    # a gas unit has no heat correction, and from 2023 no coal unit has either
    m.power_allocation(m.UnitCategory.GAS, m.Cooling.WATER, out, P2021, F)
    gen = m.PowerOutput(D(1_000_000), D(900_000), D(0), None)  # (2024 has no heat benchmark yet)
    m.power_allocation(m.UnitCategory.COAL_SMALL, m.Cooling.AIR, gen, m.plan_year(2024), F)
    # with the second month's ratio: the heat-weighted mean, 0.2 × 0.6 + 0.3 × 0.4
    months[2] = months[2]._replace(params={"heat_ratio": D("0.3")})
    assert m.unit_output(months, unit, D(600)).heat_ratio == D("0.24")


def test_generation_basis_from_2023() -> None:
    out = m.PowerOutput(generation_mwh=D(2_000_000), supply_mwh=D(1_900_000))
    a = m.power_allocation(m.UnitCategory.COAL_SMALL, m.Cooling.AIR, out, m.plan_year(2024), F)
    assert a.tonnes == 1_609_800  # 0.8049 × 2,000,000: no cooling correction any more
    with pytest.raises(NotFound):  # the 2023 category-I benchmark was not retrieved
        m.power_allocation(m.UnitCategory.COAL_LARGE, m.Cooling.WATER, out, P2023, F)


def test_load_correction_is_continuous_at_its_breakpoints() -> None:
    assert m.load_correction(D("0.85")) == 1
    assert m.load_correction(D("0.80")) == D("1.007")
    assert m.load_correction(D("0.75")) == D("1.015")
    assert abs(m.load_correction(D("0.7499999")) - D("1.015")) < D("0.00001")


@given(st.integers(1, 10_000), st.integers(1, 10_000))
def test_load_correction_never_rises_with_load(a: int, b: int) -> None:
    lo, hi = sorted((D(a) / 10_000, D(b) / 10_000))
    assert m.load_correction(lo) >= m.load_correction(hi) >= 1


def test_industrial_first_year_then_intensity() -> None:
    a = m.industrial_allocation(
        "steel", m.plan_year(2024), F, verified_emissions=3_456_789, output_t=None
    )
    assert a.tonnes == 3_456_789
    b = m.industrial_allocation(
        "cement", m.plan_year(2025), F, verified_emissions=None, output_t=D(1_000_000)
    )
    assert b.tonnes == 853_400 and b.unverified == ("benchmark.industrial/cement",)
    with pytest.raises(NotFound):
        m.industrial_allocation(
            "aluminium", m.plan_year(2025), F, verified_emissions=1, output_t=D(1)
        )
    with pytest.raises(Conflict) as exc:
        m.industrial_allocation("cement", P2022, F, verified_emissions=1, output_t=None)
    assert code_of(exc) == "SECTOR_NOT_COVERED"


@given(st.integers(0, 10**10))
def test_pre_allocation_never_exceeds_its_share(basis: int) -> None:
    """A provisional issue is the largest whole tonnage within 70 % of the basis."""
    pre = m.pre_allocation(basis, P2022)
    assert pre <= Fraction(basis) * Fraction(7, 10) < pre + 1


# ---------------------------------------------------------------- obligation, surrender, status


def test_the_20_percent_cap_and_the_gas_cap() -> None:
    coal = m.ObligationPart(m.PartKind.COAL, verified=1_000_000, allocation=700_000)
    gas = m.ObligationPart(m.PartKind.GAS, verified=300_000, allocation=250_000)
    assert m.obligation([coal], P2021) == 900_000  # 700,000 + 20 % of 1,000,000
    assert m.obligation([gas], P2021) == 250_000
    assert m.obligation([coal, gas], P2021) == 1_150_000
    small_gap = m.ObligationPart(m.PartKind.COAL, verified=1_000_000, allocation=900_000)
    assert m.obligation([small_gap], P2021) == 1_000_000
    assert m.obligation([coal], P2023) == 1_000_000  # no confirmed cap in 2023


@given(
    st.sampled_from(list(m.PartKind)),
    st.integers(0, 10**9),
    st.integers(0, 10**9),
    st.sampled_from(PLAN_YEARS),
)
def test_an_obligation_never_exceeds_emissions(
    kind: m.PartKind, v: int, a: int, plan: PlanYear
) -> None:
    due = m.obligation([m.ObligationPart(kind, v, a)], plan)
    assert min(v, a) <= due <= v


def test_ccer_limit_is_checked_at_surrender() -> None:
    assert m.ccer_limit(900_000, P2021) == 45_000
    m.check_ccer(900_000, 40_000, 5_000, P2021)
    with pytest.raises(Conflict) as exc:
        m.check_ccer(900_000, 40_000, 5_001, P2021)
    assert code_of(exc) == "CCER_LIMIT_EXCEEDED"
    assert m.ccer_limit(19, P2021) == 0  # 0.95 t: no whole tonne


def test_eligible_vintages() -> None:
    m.check_vintage(2019, P2023)
    with pytest.raises(Conflict) as exc:
        m.check_vintage(2024, P2023)
    assert code_of(exc) == "VINTAGE_NOT_ELIGIBLE"
    with pytest.raises(Conflict):
        m.check_vintage(2021, m.plan_year(2020))


def test_borrowing_only_in_2021_and_2022_above_a_10_percent_gap() -> None:
    assert m.borrowing_limit(1_000_000, 1_000_000, 850_000, P2021) == 75_000
    assert m.borrowing_limit(1_000_000, 1_000_000, 900_000, P2021) == 0  # gap exactly 10 %
    assert m.borrowing_limit(1_000_000, 1_000_000, 850_000, P2023) == 0
    # the gap is what is owed after the caps: 20 % over a 500,000 t allocation at most
    assert m.borrowing_limit(700_000, 1_000_000, 500_000, P2021) == 100_000
    assert m.borrowing_limit(500_000, 1_000_000, 500_000, P2021) == 0  # gas: owes its allocation


@pytest.mark.parametrize(
    ("excluded", "verified", "surrendered", "want"),
    [
        (True, True, 0, m.ComplianceStatus.EXCLUDED),  # exclusion wins over everything
        (True, False, 10, m.ComplianceStatus.EXCLUDED),
        (False, False, 10, m.ComplianceStatus.NOT_VERIFIED),  # nothing is due before it
        (False, True, 99, m.ComplianceStatus.IN_DEFICIT),
        (False, True, 100, m.ComplianceStatus.COMPLIANT),
        (False, True, 150, m.ComplianceStatus.COMPLIANT),
    ],
)
def test_status(excluded: bool, verified: bool, surrendered: int, want: m.ComplianceStatus) -> None:
    got = m.status(excluded=excluded, verified=verified, due=100, surrendered=surrendered)
    assert got is want
    assert m.shortfall(100, surrendered) == max(0, 100 - surrendered)


# ---------------------------------------------------------------- penalties


def test_the_golden_penalty_case() -> None:
    """Ningxia 2023: 5,128,612 t due, 4,263,312 t surrendered, December 2024 average 98.00."""
    missing = m.shortfall(5_128_612, 4_263_312)
    assert missing == 865_300
    p = m.penalty(P2023, missing, average_price_fen=9_800, multiple=D(5))
    assert p.fine_fen == 42_399_700_000  # 423,997,000 yuan
    assert p.deduction == 865_300
    assert m.deduct(500_000, p.deduction) == (0, 365_300)
    assert m.deduct(1_000_000, p.deduction) == (134_700, 0)


@pytest.mark.parametrize("multiple", [D("4.99"), D("10.01")])
def test_the_multiple_stays_within_5_to_10(multiple: Decimal) -> None:
    with pytest.raises(InvalidInput) as exc:
        m.penalty(P2023, 1, average_price_fen=9_800, multiple=multiple)
    assert code_of(exc) == "PENALTY_MULTIPLE_OUT_OF_RANGE"
    with pytest.raises(InvalidInput):
        m.penalty(P2023, 1, average_price_fen=None)


def test_before_decree_775_a_fixed_fine() -> None:
    p = m.penalty(P2021, 10_000, fine_fen=3_000_000)
    assert (p.fine_fen, p.deduction, p.multiple) == (3_000_000, 10_000, None)
    assert m.penalty(P2021, 0).fine_fen == 0
    with pytest.raises(InvalidInput):
        m.penalty(P2021, 1, fine_fen=3_000_001)
