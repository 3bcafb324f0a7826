"""The compliance console in real headless Chromium against the whole application, on the demo
market (two compliance years of seven power plants, 大唐黄石 in deficit in 2021 and penalised).

The server is `create_app` in a subprocess (`python -m tests.test_console_compliance URL PORT`);
the test process seeds the demo market through the services first. A 2023 report then goes
through the console from evidence (a form line and an uploaded file with a bad line) to
confirmation, each step by its own user. Screenshots go to tests/screenshots/.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from playwright.sync_api import Locator, Page, expect, sync_playwright

from carbonhub import demo
from carbonhub.core.auth import users
from carbonhub.core.db import Database
from carbonhub.core.settings import Settings
from tests import test_console
from tests.console_support import prepare, served, wait_ready
from tests.test_console import CHROMIUM, CHROMIUM_ARGS, notification, pick, ready, shot

pytestmark = pytest.mark.slow


class Console(test_console.Console):
    url = ""

    def password(self, username: str) -> str:
        return demo.DEMO_PASSWORD


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    work = tmp_path_factory.mktemp("console-compliance")
    url = f"sqlite:///{work / 'carbonhub.db'}"
    prepare(url)
    db = Database(Settings(database_url=url))
    try:
        demo.seed(db)
    finally:
        db.dispose()
    with served(url, work, "tests.test_console_compliance") as (base, proc):
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            wait_ready(base, proc)
            c = Console(base, None, browser)  # type: ignore[arg-type]  # no registry seed
            c.url = url
            yield c
            browser.close()
        assert c.external == [], f"the console loaded from outside: {c.external}"


def serve(url: str, port: int) -> None:
    import uvicorn

    from carbonhub.api import create_app

    app = create_app(Database(Settings(database_url=url)), duties_every_s=0)

    @app.get("/api/v1/ping")
    def ping() -> dict[str, bool]:
        return {"ok": True}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def submit_and_reload(page: Page, button: Locator) -> None:
    """Submit a form whose success reloads the page, and wait for the new page."""
    with page.expect_navigation():
        button.click()
    ready(page)


def row(page: Page, testid: str, text: str | re.Pattern[str]) -> list[str]:
    r = page.get_by_test_id(testid).locator("tbody tr").filter(has_text=text).first
    return [c.strip() for c in r.locator("td").all_inner_texts()]


def test_the_operator_dashboard_shows_status_by_sector_region_and_deadlines(
    console: Console,
) -> None:
    page = console.user("op_zhang", "/compliance?year=2021")
    expect(page.get_by_test_id("cmp-covered")).to_have_text("7")
    expect(page.get_by_test_id("cmp-rate")).to_have_text("85.7%")
    expect(page.get_by_test_id("cmp-deficit")).to_have_text("1")
    expect(page.get_by_test_id("cmp-deadline")).to_contain_text("2023-12-31")
    expect(page.get_by_test_id("cmp-deadline")).to_contain_text("已过")
    assert row(page, "cmp-by-sector", "发电")[1:6] == ["6", "1", "0", "0", "7"]
    assert row(page, "cmp-by-region", "湖北")[-1] == "7"
    expect(page.get_by_test_id("cmp-chart").locator("canvas").first).to_be_visible()
    deficit = row(page, "cmp-entities", "大唐黄石")
    assert deficit[3] == "未足额清缴" and int(deficit[-1].replace(",", "")) > 0
    assert row(page, "cmp-deadlines", "2021")[1] == "2023-12-31"
    shot(page, "compliance-dashboard", full_page=True)

    # the year switch reloads the page for that year: 2022, everybody compliant
    pick(page, page.get_by_test_id("cmp-year"), "2022")
    page.wait_for_url(re.compile(r"year=2022"))
    ready(page)
    expect(page.get_by_test_id("cmp-rate")).to_have_text("100.0%")

    # enterprises do not see the dashboard
    other = console.user("ent01", "/compliance")
    expect(other.get_by_test_id("forbidden")).to_be_visible()


def test_allocation_tables_and_factors_flag_what_is_unverified(console: Console) -> None:
    page = console.user("op_zhang", "/compliance/allocations?year=2022")
    deduction = row(page, "cmp-allocations", "扣减")
    assert deduction[0].startswith("大唐黄石") and "2021" in deduction[3]
    final = row(page, "cmp-allocations", "最终核定")
    assert final[4] == "—" and "#1" in final[3]
    expect(page.get_by_test_id("cmp-allocations").get_by_text("已完成").first).to_be_visible()
    shot(page, "compliance-allocations", full_page=True)

    factors = console.user("ent01", "/compliance/factors")
    table = factors.get_by_test_id("cmp-factors")
    expect(table.locator(".q-badge").filter(has_text="未核实").first).to_be_visible()
    expect(table.locator("tbody tr").filter(has_text="0.8218").first).to_contain_text("已核实")


def test_a_report_from_evidence_to_confirmation_in_the_console(
    console: Console, tmp_path: Path
) -> None:
    page = console.user("ent01", "/compliance/mine?year=2023")
    expect(page.get_by_test_id("cmp-my-status")).to_have_text("未核定")
    # one coal line through the form
    page.get_by_test_id("cmp-add-record").click()
    form = page.get_by_test_id("cmp-record-form")
    form.get_by_test_id("f-quantity").fill("120000")
    form.get_by_test_id("f-ncv").fill("20.9")
    form.get_by_test_id("f-element-carbon").fill("0.55")
    submit_and_reload(page, form.get_by_test_id("cmp-record-form-submit"))
    notification(page, "已录入 1 条")  # shown again on the reloaded page
    # the unit's generation from a file, with one line above capacity × hours
    lines = ["机组,月份,类型,品种,数量,主体"]
    code = _entity_of(console, "ent01")
    lines += [f"#1,{m},generation,,300000,{code}" for m in range(1, 13)]
    lines.append(f"#2,1,generation,,9999999,{code}")
    upload = tmp_path / "2023.csv"
    upload.write_bytes(("\n".join(lines) + "\n").encode("gbk"))
    page.get_by_test_id("cmp-upload").locator("input[type=file]").set_input_files(str(upload))
    notification(page, "已导入 12 / 13 行")
    assert row(page, "cmp-rejected", "14")[1] == "GENERATION_ABOVE_CAPACITY"
    page.get_by_test_id("cmp-refresh").click()
    ready(page)
    expect(page.get_by_test_id("cmp-evidence").locator("tbody tr")).to_have_count(13)
    page.get_by_test_id("cmp-submit-report").click()
    submit_and_reload(page, page.get_by_test_id("cmp-submit-form-submit"))
    notification(page, "已提交")
    shot(page, "compliance-mine", full_page=True)

    # the operator assigns the verification body
    op = console.user("op_zhang", "/compliance/reports?year=2023")
    op.get_by_test_id("cmp-reports").get_by_text("华能武汉").click()
    ready(op)
    expect(op.get_by_test_id("cmp-report-status")).to_have_text("已提交")
    op.get_by_test_id("cmp-assign").click()
    form = op.get_by_test_id("cmp-assign-form")
    pick(op, form.get_by_test_id("f-verifier"), re.compile("中环联合"))
    submit_and_reload(op, form.get_by_test_id("cmp-assign-form-submit"))
    notification(op, "核查中")
    report_url = op.url

    # the verifier finds it in the queue and signs off
    ver = console.user("verifier_wang", "/compliance/queue")
    ver.get_by_test_id("cmp-queue").get_by_text("华能武汉").click()
    ready(ver)
    ver.get_by_test_id("cmp-verify").click()
    form = ver.get_by_test_id("cmp-verify-form")
    form.get_by_test_id("f-findings").fill("抽查 3 个月燃煤凭证，无重大差异")
    submit_and_reload(ver, form.get_by_test_id("cmp-verify-form-submit"))
    notification(ver, "已核查")

    # the operator confirms; the timeline shows each step
    op.goto(report_url)
    ready(op)
    op.get_by_test_id("cmp-confirm").click()
    submit_and_reload(op, op.get_by_test_id("cmp-confirm-form-submit"))
    notification(op, "已确认")
    timeline = op.get_by_test_id("cmp-timeline")
    expect(timeline.locator(".q-timeline__entry")).to_have_count(4)
    expect(timeline).to_contain_text("无重大差异")
    expect(op.get_by_test_id("cmp-lines").locator("tbody tr").first).to_contain_text(
        "bituminous_coal"
    )
    shot(op, "compliance-report", full_page=True)


def test_the_entity_in_deficit_is_reminded_of_its_shortfall(console: Console) -> None:
    page = console.user("ent03", "/compliance/mine?year=2021")
    expect(page.get_by_test_id("cmp-my-status")).to_have_text("未足额清缴")
    expect(page.get_by_test_id("cmp-reminder")).to_contain_text("2023-12-31")


def _entity_of(console: Console, username: str) -> str:
    """The entity a demo user acts for, read from the console's database."""
    db = Database(Settings(database_url=console.url))
    try:
        with db.read() as uow:
            found = uow.conn.execute(
                sa.select(users.c.entity_id).where(users.c.username == username)
            ).scalar_one()
            return str(found)
    finally:
        db.dispose()


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))


def test_an_empty_lot_is_refused_with_its_reason(console: Console) -> None:
    page = console.user("op_zhang", "/compliance/reports?year=2022")
    expect(page.get_by_test_id("cmp-reports").locator("tbody tr")).to_have_count(7)
    page.get_by_test_id("cmp-confirm-lot").click()
    page.get_by_test_id("cmp-confirm-lot-form-submit").click()
    notification(page, "NOTHING_TO_CONFIRM")
    expect(page.get_by_test_id("cmp-confirm-lot-form")).to_be_visible()  # left open to retry
    other = console.user("verifier_wang", "/compliance/reports?year=2022")
    expect(other.get_by_test_id("cmp-confirm-lot")).to_have_count(0)
