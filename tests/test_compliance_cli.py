"""`carbonhub compliance …`: evidence files with a progress bar and an error report, the whole
year through `run-cycle` (on a simulation market only), status and penalties; bad input is one
error line and changes nothing."""

from __future__ import annotations

import csv
from pathlib import Path

import sqlalchemy as sa

from carbonhub.core.db import normalise_url
from tests.test_cli import Cli, cli  # noqa: F401 - the fixture, used by name
from tests.test_compliance_service import Mrv, issue, mrv  # noqa: F401

SIM = {"CARBONHUB_SIMULATION": "1"}


def evidence_csv(unit_code: str, entity: str, *, bad_lines: bool = False) -> str:
    head = "主体,机组,月份,类型,品种,数量,低位发热量,元素碳含量"
    lines = [head]
    for month in range(1, 13):
        lines.append(f"{entity},,{month},fuel,bituminous_coal,100000,20.900,0.5500")
        lines.append(f"{entity},{unit_code},{month},generation,,250000,,")
        lines.append(f"{entity},{unit_code},{month},supply,,235000,,")
    if bad_lines:
        lines.append(f"{entity},{unit_code},1,generation,,999999999,,")  # above capacity × hours
        lines.append(f"{entity},{unit_code},2,generation,,250000,,")  # a duplicate
    return "\n".join(lines) + "\n"


def counts(url: str) -> dict[str, int]:
    engine = sa.create_engine(normalise_url(url))
    try:
        with engine.connect() as c:
            return {
                t: c.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one()
                for t in (
                    "monthly_records",
                    "emission_reports",
                    "compliance_allocations",
                    "transfers",
                    "journal",
                )
            }
    finally:
        engine.dispose()


def test_a_year_from_files_to_penalties_through_the_cli(
    cli: Cli,  # noqa: F811
    mrv: Mrv,  # noqa: F811
    tmp_path: Path,
) -> None:
    w = mrv.w
    for user in ("op1", "alice", "vic"):
        cli.login(user, None if user != "vic" else "password-vic")
    gbk = tmp_path / "2021.csv"
    gbk.write_bytes(evidence_csv("#1", w.entity_a).encode("gbk"))
    out = cli.ok("compliance", "import", str(gbk), "--year", "2021", user="alice")
    assert (out["accepted"], out["rejected"], out["encoding"]) == (36, [], "gbk")

    utf8 = tmp_path / "2022.csv"
    utf8.write_text(evidence_csv("#1", w.entity_a, bad_lines=True), encoding="utf-8")
    errors = tmp_path / "errors.csv"
    code, text, err = cli.run(
        "compliance", "import", str(utf8), "--year", "2022", "--errors", str(errors), user="alice"
    )
    assert code == 0, err
    assert "accepted" in text and "GENERATION_ABOVE_CAPACITY" in text
    with errors.open(encoding="utf-8-sig") as f:
        rejected = list(csv.DictReader(f))
    assert [(r["line"], r["code"]) for r in rejected] == [
        ("38", "GENERATION_ABOVE_CAPACITY"),
        ("39", "RECORD_EXISTS"),
    ]

    # the whole cycle acts for every party: refused unless the market is a simulation
    before = counts(cli.url)
    cycle = ("compliance", "run-cycle", "--year", "2022", "--verifier", "vic", "--checker")
    assert "SIMULATION_ONLY" in cli.error(*cycle, "op2", user="op1")
    line = cli.error(*cycle, "op1", user="op1", **SIM)
    assert "CAST_INVALID" in line  # the maker cannot be the checker
    assert counts(cli.url) == before

    issue(mrv, "CEA-2022", 5_000_000)
    run = cli.ok(*cycle, "op2", user="op1", **SIM)
    phases = run["phases"]
    assert phases["pre_allocation"]["proposed"] == 1
    assert phases["reports"]["submitted"] == 1
    assert {k: phases["verification"][k] for k in ("assigned", "verified", "confirmed")} == {
        "assigned": 1,
        "verified": 1,
        "confirmed": 1,
    }
    assert phases["true_up"]["proposed"] == 1
    assert phases["surrender"]["surrenders"] == 1
    st = cli.ok("compliance", "status", "--year", "2022", "--entity", w.entity_a, user="alice")
    # alice surrendered all she was allocated, short of her emissions
    assert st["surrendered"] == st["allocation"] and st["shortfall"] > 0
    assert run["status"] == {"in-deficit": 1} and run["non_compliant"] == [w.entity_a]

    # a second run finds nothing left to do and changes nothing but its journal of who acted
    before = counts(cli.url)
    again = cli.ok(*cycle, "op2", user="op1", **SIM)
    assert again["phases"]["reports"]["submitted"] == 0
    assert again["phases"]["surrender"]["surrenders"] == 0
    after = counts(cli.url)
    assert {k: v for k, v in after.items() if k != "journal"} == {
        k: v for k, v in before.items() if k != "journal"
    }

    report = cli.ok("compliance", "reports", "--year", "2022", user="vic")[0]
    shown = cli.ok("compliance", "report", report["id"], user="alice")
    assert [e["to"] for e in shown["timeline"]][-1] == "CONFIRMED"
    table = cli.ok("compliance", "allocations", "--year", "2022", user="alice")
    assert sorted((a["kind"], a["transfer_status"]) for a in table) == [
        ("FINAL", None),
        ("PRE", "COMPLETED"),
        ("TRUE_UP", "COMPLETED"),
    ]

    # 2022 rules: the 2021 Measures' fine, and next year's allocation less the shortfall
    pen = cli.ok("compliance", "penalties", "--year", "2022", "--set", user="op1")
    assert [p["entity_id"] for p in pen["penalties"]] == [w.entity_a]
    assert pen["penalties"][0]["deduction_next_year"] == st["shortfall"]
    shown_pen = cli.ok("compliance", "penalties", "--year", "2022", user="op1")
    assert shown_pen["penalties"] == pen["penalties"]
    line = cli.error("compliance", "penalties", "--year", "2022", "--set", user="op1")
    assert "PENALTIES_DONE" in line


def test_bad_files_are_one_error_line_and_change_nothing(
    cli: Cli,  # noqa: F811
    mrv: Mrv,  # noqa: F811
    tmp_path: Path,
) -> None:
    cli.login("alice")
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("entity,month,kind,quantity\nx,1,fuel,1\n")
    utf16 = tmp_path / "utf16.csv"
    utf16.write_bytes(evidence_csv("#1", mrv.w.entity_a).encode("utf-16"))
    before = counts(cli.url)
    assert "IMPORT_COLUMNS_MISSING" in cli.error(
        "compliance", "import", str(wrong), "--year", "2022", user="alice"
    )
    assert "IMPORT_ENCODING" in cli.error(
        "compliance", "import", str(utf16), "--year", "2022", user="alice"
    )
    assert "PLAN_YEAR_UNKNOWN" in cli.error(
        "compliance", "submit", mrv.w.entity_a, "--year", "2031", user="alice"
    )
    assert counts(cli.url) == before
