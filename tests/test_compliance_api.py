"""Compliance over HTTP: a year from evidence to penalty, evidence files (CSV in UTF-8 and GBK,
Excel) with per-line rejections, and refusals that are problem+json and change nothing."""

from __future__ import annotations

import io
from typing import Any

import openpyxl
import pytest

from carbonhub.core.db import Database
from tests.test_api import (  # cheap_argon2: the autouse fixture, active here too
    assert_problem,
    cheap_argon2,  # noqa: F401
    make_client,
    reject,
    token_for,
    with_key,
)
from tests.test_compliance_service import (  # mrv: the fixture, used by name
    EXPECTED_2022,
    Mrv,
    issue,
    mrv,  # noqa: F401
    year_of_evidence,
)

API = "/api/v1/compliance"


class Http:
    def __init__(self, x: Mrv) -> None:
        self.x = x
        self.client = make_client(x.w.db)
        w = x.w
        self.h = {
            "op1": token_for(w.auth, w.op1),
            "op2": token_for(w.auth, w.op2),
            "alice": token_for(w.auth, w.alice),
            "bob": token_for(w.auth, w.bob),
            "vic": token_for(w.auth, x.vic),
            "vince": token_for(w.auth, x.vince),
        }

    @property
    def db(self) -> Database:
        return self.x.w.db

    def post(self, who: str, path: str, body: Any = None, status: int = 200) -> Any:
        r = self.client.post(f"{API}{path}", headers=with_key(self.h[who]), json=body)
        assert r.status_code == status, (r.status_code, r.text[:500])
        return r.json()

    def get(self, who: str, path: str) -> Any:
        r = self.client.get(f"{API}{path}", headers=self.h[who])
        assert r.status_code == 200, (r.status_code, r.text[:500])
        return r.json()

    def upload(self, who: str, year: int, data: bytes, kind: str = "text/csv") -> Any:
        return self.client.post(
            f"{API}/years/{year}/evidence-file",
            headers={**with_key(self.h[who]), "Content-Type": kind},
            content=data,
        )


@pytest.fixture
def http(mrv: Mrv) -> Http:  # noqa: F811
    return Http(mrv)


def test_a_year_over_http_from_evidence_to_status(http: Http) -> None:
    x, w = http.x, http.x.w
    ea = w.entity_a
    recorded = http.post(
        "alice",
        f"/entities/{ea}/years/2022/records",
        {
            "records": [
                {"item": "", "unit_id": "", "params": {}} | r for r in year_of_evidence(x.unit)
            ]
        },
        201,
    )
    assert recorded["recorded"] == 60
    assert len(http.get("alice", f"/entities/{ea}/years/2022/records")) == 60
    rep = http.post("alice", f"/entities/{ea}/years/2022/report")
    assert (rep["status"], rep["emissions"]) == ("SUBMITTED", EXPECTED_2022)
    http.post("op1", f"/reports/{rep['id']}/assign", {"verifier_entity_id": x.body})
    assert [r["id"] for r in http.get("vic", "/verification-queue")] == [rep["id"]]
    assert http.get("vince", "/verification-queue") == []
    http.post(
        "vic",
        f"/reports/{rep['id']}/verify",
        {"verified_emissions": EXPECTED_2022 - 1_200, "findings": "校正 2 月燃煤量"},
    )
    done = http.post("op1", f"/reports/{rep['id']}/confirm")
    assert done["status"] == "CONFIRMED"
    full = http.get("alice", f"/reports/{rep['id']}")
    assert [e["to"] for e in full["timeline"]] == [
        "SUBMITTED",
        "UNDER_VERIFICATION",
        "VERIFIED",
        "CONFIRMED",
    ]
    listed = http.get("op1", "/reports?year=2022&status=CONFIRMED")
    assert [r["id"] for r in listed] == [rep["id"]] and "lines" not in listed[0]
    assert http.get("bob", "/reports?year=2022") == []  # bob's own: none
    assert [r["id"] for r in http.get("vic", "/reports?year=2022")] == [rep["id"]]

    ent = http.get("alice", f"/entities/{ea}")
    assert [u["code"] for u in ent["units"]] == ["#1"] and ent["reports"][0]["year"] == 2022
    assert [e["entity_id"] for e in http.get("op1", "/entities")] == [ea]
    assert http.get("bob", "/entities") == []

    st = http.get("alice", f"/entities/{ea}/years/2022/status")
    assert (st["status"], st["obligation"]) == ("in-deficit", EXPECTED_2022 - 1_200)
    market = http.get("op1", "/years/2022/status")
    assert market["non_compliant"] == [ea] and market["compliance_rate"] == "0.0000"
    years = {p["year"]: p for p in http.get("bob", "/plan-years")}
    assert years[2022]["deadline"] == "2023-12-31" and years[2022]["coal_cap_share"] == "0.20"
    assert any(f["certainty"] == "unverified" for f in http.get("bob", "/factors"))


def test_allocation_tables_show_the_checkers_queue(http: Http) -> None:
    x, w = http.x, http.x.w
    ea = w.entity_a
    x.svc.record_months(
        w.alice, w.key(), entity_id=ea, year_=2021, records=year_of_evidence(x.unit)
    )
    issue(x, "CEA-2022", 5_000_000)
    out = http.post("op1", "/years/2022/allocations", {"kind": "PRE"})
    assert [ln["entity_id"] for ln in out["lines"]] == [ea]
    table = http.get("op1", "/years/2022/allocations")
    assert [(a["kind"], a["transfer_status"]) for a in table] == [("PRE", "PENDING")]
    w.reg.approve(w.op2, w.key(), table[0]["transfer_id"])
    assert http.get("alice", "/years/2022/allocations")[0]["transfer_status"] == "COMPLETED"
    assert http.get("bob", "/years/2022/allocations") == []
    body = reject(
        http.db,
        lambda: http.client.post(
            f"{API}/years/2022/allocations", headers=with_key(http.h["op1"]), json={"kind": "PRE"}
        ),
        409,
        "ALREADY_ALLOCATED",
    )
    assert body["detail_zh"]


def test_who_may_act_is_checked_and_refusals_change_nothing(http: Http) -> None:
    x, w = http.x, http.x.w
    ea = w.entity_a
    x.svc.record_months(
        w.alice, w.key(), entity_id=ea, year_=2022, records=year_of_evidence(x.unit)
    )
    rep = x.svc.submit_report(w.alice, w.key(), entity_id=ea, year_=2022)
    x.svc.assign_verifier(w.op1, w.key(), report_id=rep["id"], verifier_entity_id=x.body)

    def send(who: str, path: str, body: Any = None) -> Any:
        return lambda: http.client.post(f"{API}{path}", headers=with_key(http.h[who]), json=body)

    verify = {"verified_emissions": 1, "findings": "ok"}
    reject(http.db, send("alice", f"/reports/{rep['id']}/verify", verify), 403)
    reject(http.db, send("vince", f"/reports/{rep['id']}/verify", verify), 403, "NOT_ASSIGNED")
    reject(http.db, send("bob", f"/entities/{ea}/years/2022/report"), 403, "NOT_YOUR_ENTITY")
    reject(http.db, send("alice", f"/entities/{ea}/years/2031/report"), 404, "PLAN_YEAR_UNKNOWN")
    reject(http.db, send("alice", "/years/2022/penalties", {}), 403)
    reject(
        http.db,
        send("alice", f"/entities/{ea}/years/2022/records", {"records": [{"kind": "fuel"}]}),
        422,
    )
    negative = {"kind": "generation", "month": 1, "unit_id": x.unit, "quantity": "-5"}
    reject(
        http.db,
        send("alice", f"/entities/{ea}/years/2023/records", {"records": [negative]}),
        422,
        "DECIMAL_INVALID",
    )
    assert http.get("op1", "/years/2022/penalties")["penalties"] == []  # none set yet
    r = http.client.get(f"{API}/reports/{rep['id']}", headers=http.h["bob"])
    assert_problem(r, 403, "NOT_YOUR_REPORT")


# ---------------------------------------------------------------- evidence files


def csv_of(unit_code: str, credit_code: str, *, header: str | None = None) -> str:
    head = header or "主体,机组,月份,类型,品种,数量,低位发热量,元素碳含量"
    lines = [head]
    for month in (1, 2, 3):
        lines.append(f"{credit_code},,{month},fuel,bituminous_coal,1000,20.9,0.55")
        lines.append(f"{credit_code},{unit_code},{month},generation,,2500,,")
    return "\n".join(lines) + "\n"


def credit_code(http: Http) -> str:
    with http.db.read() as uow:
        from carbonhub.core.auth import entities

        return str(
            uow.conn.execute(entities.select().where(entities.c.id == http.x.w.entity_a))
            .one()
            .credit_code
        )


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk"])
def test_a_csv_in_utf8_or_gbk_is_imported(http: Http, encoding: str) -> None:
    data = csv_of("#1", credit_code(http)).encode(encoding)
    r = http.upload("alice", 2023, data)
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["rows"], out["accepted"], out["rejected"]) == (6, 6, []), out
    assert out["encoding"] == ("gbk" if encoding == "gbk" else "utf-8")
    got = http.get("alice", f"/entities/{http.x.w.entity_a}/years/2023/records")
    assert {(g["kind"], g["item"]) for g in got} == {
        ("fuel", "bituminous_coal"),
        ("generation", ""),
    }


def test_a_workbook_is_imported_and_bad_lines_are_named(http: Http) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    code = credit_code(http)
    sheet.append(["entity", "unit", "month", "kind", "item", "quantity", "ncv"])
    sheet.append([code, None, 1, "fuel", "bituminous_coal", 1000, 20.9])
    sheet.append([code, None, 1, "fuel", "bituminous_coal", 1000, 20.9])  # the same line again
    sheet.append([code, "#9", 2, "generation", None, 2500])  # no such unit
    sheet.append([None] * 7)  # blank: not a row
    sheet.append([code, "#1", 13, "generation", None, 2500])  # month 13
    sheet.append([code, "#1", 3, "generation", None, 2500.5, None, "extra"])
    buf = io.BytesIO()
    book.save(buf)
    r = http.upload(
        "alice",
        2023,
        buf.getvalue(),
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["rows"], out["accepted"], out["encoding"]) == (5, 1, "xlsx"), out
    assert [(e["line"], e["code"]) for e in out["rejected"]] == [
        (3, "RECORD_EXISTS"),
        (4, "UNIT_NOT_FOUND"),
        (6, "MONTH_INVALID"),
        (7, "ROW_EXTRA_CELLS"),
    ]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"entity,unit,month,kind,item\nx,,1,fuel,coal\n", "IMPORT_COLUMNS_MISSING"),
        (b"entity,unit,month,kind,item,quantity,colour\n", "IMPORT_COLUMN_UNKNOWN"),
        (b"entity,unit,month,kind,item,quantity,ncv,ncv\n", "IMPORT_COLUMN_DUPLICATE"),
        (b"", "IMPORT_EMPTY"),
        (b"entity,unit,month,kind,item,quantity\n", "IMPORT_EMPTY"),
        ("entity,unit\n".encode("utf-16"), "IMPORT_ENCODING"),
        (b"PK\x03\x04 not really a workbook", "IMPORT_MALFORMED"),
    ],
)
def test_a_file_of_the_wrong_shape_is_refused_whole(http: Http, data: bytes, code: str) -> None:
    reject(http.db, lambda: http.upload("alice", 2023, data), 422, code)


def test_a_damaged_workbook_is_refused_whole(http: Http) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["entity", "unit", "month", "kind", "item", "quantity"])
    buf = io.BytesIO()
    book.save(buf)
    damaged = buf.getvalue()[: len(buf.getvalue()) // 2]
    reject(http.db, lambda: http.upload("alice", 2023, damaged), 422, "IMPORT_MALFORMED")


def test_a_verifier_outside_any_body_reads_no_report(http: Http) -> None:
    x, w = http.x, http.x.w
    x.svc.record_months(
        w.alice, w.key(), entity_id=w.entity_a, year_=2022, records=year_of_evidence(x.unit)
    )
    rep = x.svc.submit_report(w.alice, w.key(), entity_id=w.entity_a, year_=2022)
    vera = {"Authorization": token_for(w.auth, w.verifier)["Authorization"]}
    r = http.client.get(f"{API}/reports?year=2022", headers=vera)
    assert r.status_code == 200 and r.json() == []
    r = http.client.get(f"{API}/reports/{rep['id']}", headers=vera)
    assert_problem(r, 403, "NOT_YOUR_REPORT")


def test_an_enterprise_imports_only_its_own_rows(http: Http) -> None:
    out = http.upload("bob", 2023, csv_of("#1", credit_code(http)).encode()).json()
    assert out["accepted"] == 0
    assert {e["code"] for e in out["rejected"]} == {"NOT_YOUR_ENTITY"}
