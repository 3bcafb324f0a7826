"""The registry console in real headless Chromium against a real server on a seeded database.

One server (uvicorn in a subprocess) and one browser serve the whole module; each test signs in
in its own browser context. Screenshots go to tests/screenshots/<name>.png.
"""

from __future__ import annotations

import ast
import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

from carbonhub.core import journal
from carbonhub.core.auth import SYSTEM
from carbonhub.core.db import Database
from carbonhub.core.settings import Settings
from carbonhub.registry.service import RegistryService
from tests.console_support import (
    PASSWORDS,
    Seeded,
    key,
    prepare,
    seed,
    served,
    wait_ready,
)

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SHOTS = Path(__file__).resolve().parent / "screenshots"
TIMEOUT_MS = 15_000
# Quasar's dialog and notification transitions only slow the test down.
NO_ANIMATIONS = """
document.addEventListener("DOMContentLoaded", () => {
  const style = document.createElement("style");
  style.textContent = "*, *::before, *::after { transition-duration: 0s !important; "
    + "transition-delay: 0s !important; animation-duration: 0s !important; }";
  document.head.appendChild(style);
});
"""


class Console:
    def __init__(self, base: str, seeded: Seeded, browser: Browser) -> None:
        self.base = base
        self.seeded = seeded
        self.browser = browser
        self.external: list[str] = []
        self._sessions: dict[str, Page] = {}

    def page(self) -> Page:
        context = self.browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
        context.set_default_timeout(TIMEOUT_MS)
        expect.set_options(timeout=TIMEOUT_MS)
        context.add_init_script(NO_ANIMATIONS)
        page = context.new_page()
        page.on("request", self._watch)
        return page

    def _watch(self, request: object) -> None:
        url = str(getattr(request, "url", ""))
        if not (url.startswith(self.base) or url.startswith(("data:", "blob:"))):
            self.external.append(url)

    def login(self, username: str, page: Page | None = None) -> Page:
        page = page or self.page()
        page.goto(f"{self.base}/login")
        ready(page)
        page.get_by_test_id("login-username").fill(username)
        page.get_by_test_id("login-password").fill(self.password(username))
        page.get_by_test_id("login-submit").click()
        page.wait_for_url(f"{self.base}/")
        ready(page)
        return page

    def password(self, username: str) -> str:
        return PASSWORDS[username]

    def user(self, username: str, path: str = "/") -> Page:
        """A signed-in page for `username`, shared by the tests (one login per user), at `path`."""
        if username not in self._sessions:
            self._sessions[username] = self.login(username)
        page = self._sessions[username]
        self.goto(page, path)
        return page

    def goto(self, page: Page, path: str) -> None:
        page.goto(self.base + path)
        ready(page)

    @contextmanager
    def registry(self) -> Iterator[RegistryService]:
        """The registry service on the console's database, for setting up and checking state."""
        db = Database(Settings(database_url=self.seeded.url))
        try:
            yield RegistryService(db)
        finally:
            db.dispose()

    def posted(self, account_id: str, unit_class: str = "CEA-2023") -> dict[str, int]:
        with self.registry() as reg:
            for h in reg.account(SYSTEM, account_id)["holdings"]:
                if h["unit_class"] == unit_class:
                    return {k: int(h[k]) for k in ("posted", "pending", "held", "available")}
            return {"posted": 0, "pending": 0, "held": 0, "available": 0}

    def account(self, account_id: str) -> dict[str, Any]:
        with self.registry() as reg:
            return reg.account(SYSTEM, account_id)

    def open_account(self, entity_id: str, type_: str, name: str) -> str:
        """An open, empty account: requested by op1 for the entity, approved by op2."""
        op1, op2 = self.seeded.actors["op1"], self.seeded.actors["op2"]
        with self.registry() as reg:
            acc = reg.request_account(op1, key(), type=type_, name=name, entity_id=entity_id)
            reg.decide_account(op2, key(), acc["id"], approve=True)
            return str(acc["id"])


def ready(page: Page) -> None:
    """The page is built and its websocket has shaken hands, so events reach the server."""
    page.wait_for_function("window.did_handshake === true")


def shot(page: Page, name: str, *, full_page: bool = False) -> None:
    SHOTS.mkdir(exist_ok=True)
    page.wait_for_timeout(150)  # let Quasar's transitions settle
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page)


def notification(page: Page, text: str | re.Pattern[str]) -> None:
    expect(page.locator(".q-notification").filter(has_text=text).first).to_be_visible()


def holdings_cell(page: Page) -> str:
    return page.get_by_test_id("holdings-table").locator("tbody tr").first.inner_text()


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    work = tmp_path_factory.mktemp("console")
    url = f"sqlite:///{work / 'carbonhub.db'}"
    prepare(url)
    with served(url, work) as (base, proc):  # the server starts while the test seeds
        seeded = seed(url)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            wait_ready(base, proc)
            c = Console(base, seeded, browser)
            yield c
            browser.close()
        assert c.external == [], f"the console loaded from outside: {c.external}"


def test_console_leaves_api_paths_to_the_api(console: Console) -> None:
    with urllib.request.urlopen(f"{console.base}/api/v1/ping") as r:  # added after mount()
        assert json.load(r) == {"ok": True}
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{console.base}/api/v1/no-such-thing")
    assert err.value.code == 404
    assert err.value.headers.get_content_type() == "application/json"  # not the console's page
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(urllib.request.Request(f"{console.base}/api/v1/ping", method="POST"))
    assert err.value.code == 405


def test_login_rejects_a_wrong_password_and_accepts_the_right_one(console: Console) -> None:
    page = console.page()
    page.goto(console.base + "/")
    page.wait_for_url(f"{console.base}/login")  # not signed in: sent to the login page
    ready(page)
    expect(page.get_by_text("开放碳市场平台")).to_be_visible()
    shot(page, "login")
    page.get_by_test_id("lang-toggle").click()  # the toggle is there before signing in, too
    expect(page.get_by_text("Open carbon-market platform")).to_be_visible()
    page.get_by_test_id("lang-toggle").click()
    expect(page.get_by_text("开放碳市场平台")).to_be_visible()
    ready(page)
    page.get_by_test_id("login-username").fill("alice")
    page.get_by_test_id("login-password").fill("not-her-password")
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("login-error")).to_contain_text("用户名或密码错误")
    notification(page, "LOGIN_FAILED")
    shot(page, "login_error")
    assert page.url == f"{console.base}/login"

    console.login("alice", page)
    expect(page.get_by_test_id("current-user")).to_contain_text("alice")
    page.get_by_test_id("logout").click()
    page.wait_for_url(f"{console.base}/login")
    page.goto(console.base + "/registry/accounts")  # the session is gone
    page.wait_for_url(f"{console.base}/login")
    page.context.close()


def test_dashboard_shows_totals_table_chart_and_market_status(console: Console) -> None:
    page = console.user("alice")
    expect(page.get_by_text("登记总览").first).to_be_visible()
    totals = page.get_by_test_id("totals-table")
    expect(totals.locator("tbody tr").filter(has_text="CEA-2023")).to_contain_text("1,000,000")
    expect(page.get_by_test_id("market-status")).to_have_text("正常运行")
    expect(page.get_by_test_id("totals-chart").locator("canvas").first).to_be_visible()
    drawer = page.locator(".q-drawer")
    expect(drawer.get_by_text("登记账户")).to_be_visible()
    expect(drawer.get_by_text("审批队列")).to_have_count(0)  # operators only
    shot(page, "dashboard")


def test_accounts_list_shows_holders_their_own_and_operators_all(console: Console) -> None:
    s = console.seeded
    page = console.user("alice")
    page.locator(".q-drawer").get_by_text("登记账户").click()
    page.wait_for_url(f"{console.base}/registry/accounts")
    table = page.get_by_test_id("accounts-table")
    expect(table.get_by_role("link", name=s.a)).to_be_visible()
    expect(table.get_by_text(s.b)).to_have_count(0)

    page = console.user("op1", "/registry/accounts")
    table = page.get_by_test_id("accounts-table")
    expect(table.get_by_role("link", name=s.a)).to_be_visible()
    expect(table.get_by_role("link", name=s.b)).to_be_visible()
    expect(table.get_by_text("签发账户")).to_be_visible()
    shot(page, "accounts")
    table.get_by_role("link", name=s.b).click()
    page.wait_for_url(f"{console.base}/registry/accounts/{s.b}")
    expect(page.get_by_test_id("account-id")).to_have_text(s.b)


def test_account_page_shows_holdings_blocks_history_and_holds(console: Console) -> None:
    s = console.seeded
    page = console.user("alice", "/registry/accounts")
    page.get_by_role("link", name=s.a).click()
    page.wait_for_url(f"{console.base}/registry/accounts/{s.a}")
    ready(page)
    expect(page.get_by_test_id("account-id")).to_have_text(s.a)
    expect(page.get_by_text("华能武汉发电有限公司")).to_be_visible()
    expect(page.get_by_test_id("holdings-table").locator("tbody tr").first).to_contain_text(
        "CEA-2023"
    )
    expect(page.get_by_test_id("blocks-table")).to_contain_text("CN-CEA-2023-420000-1-")
    expect(page.get_by_test_id("history-table")).to_contain_text("分配")
    expect(page.get_by_test_id("holds-table")).to_contain_text("暂无数据")
    shot(page, "account", full_page=True)
    console.goto(page, f"/registry/accounts/{s.b}")  # not hers
    expect(page.get_by_test_id("account-error")).to_contain_text("NOT_ACCOUNT_HOLDER")


def test_transfer_moves_units_and_an_over_balance_transfer_changes_nothing(
    console: Console,
) -> None:
    s = console.seeded
    before = console.posted(s.a)
    page = console.user("alice", f"/registry/accounts/{s.a}")
    expect(page.get_by_test_id("holdings-table")).to_contain_text(f"{before['available']:,}")

    page.get_by_test_id("open-transfer").click()
    dialog = page.get_by_test_id("form-transfer")
    dialog.get_by_test_id("f-to-account").fill(s.b)
    dialog.get_by_test_id("f-quantity").fill("1000")
    dialog.get_by_test_id("f-reason").fill("长协交割")
    shot(page, "form_transfer")
    dialog.get_by_test_id("form-transfer-submit").dblclick()  # a double click submits once
    notification(page, "转让业务")
    expect(dialog).to_have_count(0)
    after = before["posted"] - 1000
    expect(page.get_by_test_id("holdings-table").locator("tbody tr").first).to_contain_text(
        f"{after:,}"
    )
    expect(page.get_by_test_id("history-table")).to_contain_text(s.b)
    assert console.posted(s.a)["posted"] == after
    assert console.posted(s.b)["posted"] == 1000

    page.get_by_test_id("open-transfer").click()
    dialog = page.get_by_test_id("form-transfer")
    dialog.get_by_test_id("f-to-account").fill(s.b)
    dialog.get_by_test_id("f-quantity").fill("600000")
    dialog.get_by_test_id("form-transfer-submit").click()
    notification(page, "可用仅")
    notification(page, "INSUFFICIENT_AVAILABLE")
    expect(dialog).to_be_visible()  # still open: the error is shown, nothing happened
    shot(page, "transfer_error")
    assert console.posted(s.a)["posted"] == after
    assert console.posted(s.b)["posted"] == 1000
    page.keyboard.press("Escape")


def test_surrender_and_voluntary_cancellation(console: Console) -> None:
    s = console.seeded
    before = console.posted(s.a)["posted"]
    page = console.user("alice", f"/registry/accounts/{s.a}")

    page.get_by_test_id("open-surrender").click()
    dialog = page.get_by_test_id("form-surrender")
    dialog.get_by_test_id("f-quantity").fill("2000")
    dialog.get_by_test_id("f-year").fill("2023")
    shot(page, "form_surrender")
    dialog.get_by_test_id("form-surrender-submit").click()
    notification(page, "清缴业务")
    expect(page.get_by_test_id("history-table")).to_contain_text("清缴")

    page.get_by_test_id("open-cancel").click()
    dialog = page.get_by_test_id("form-cancel")
    dialog.get_by_test_id("f-quantity").fill("300")
    dialog.get_by_test_id("form-cancel-submit").click()  # no beneficiary: the service refuses
    notification(page, "FIELD_REQUIRED")
    dialog.get_by_test_id("f-beneficiary").fill("2024 武汉马拉松碳中和")
    dialog.get_by_test_id("form-cancel-submit").click()
    notification(page, "自愿注销业务")
    expect(page.get_by_test_id("history-table")).to_contain_text("自愿注销")
    after = before - 2300
    expect(page.get_by_test_id("holdings-table").locator("tbody tr").first).to_contain_text(
        f"{after:,}"
    )
    assert console.posted(s.a)["posted"] == after


def test_place_a_pledge_and_release_it(console: Console) -> None:
    s = console.seeded
    page = console.user("alice", f"/registry/accounts/{s.a}")
    page.get_by_test_id("open-hold").click()
    dialog = page.get_by_test_id("form-hold")
    expect(dialog.get_by_test_id("f-hold-kind")).to_be_visible()
    dialog.get_by_test_id("f-quantity").fill("5000")
    dialog.get_by_test_id("f-lien-holder").click()
    page.get_by_role("option", name="汉口银行股份有限公司").click()
    shot(page, "form_hold")
    dialog.get_by_test_id("form-hold-submit").click()
    notification(page, "5,000")
    holds = page.get_by_test_id("holds-table")
    expect(holds).to_contain_text("质押")
    expect(page.get_by_test_id("holdings-table").locator("tbody tr").first).to_contain_text("5,000")
    assert console.posted(s.a)["held"] == 5000

    holds.get_by_test_id("release-btn").first.click()  # the pledgor may not release a pledge
    page.get_by_test_id("form-release-submit").click()
    notification(page, "RELEASE_NOT_ALLOWED")
    page.keyboard.press("Escape")

    page = console.user("op1", f"/registry/accounts/{s.a}")  # the operator may
    holds = page.get_by_test_id("holds-table")
    expect(holds).to_contain_text("质押")
    holds.get_by_test_id("release-btn").first.click()
    page.get_by_test_id("form-release").get_by_test_id("f-reason").fill("贷款已清偿")
    page.get_by_test_id("form-release-submit").click()
    notification(page, "已解除")
    expect(holds).to_contain_text("暂无数据")
    assert console.posted(s.a)["held"] == 0


def test_approval_queue_needs_a_second_operator(console: Console) -> None:
    page = console.user("op1")
    page.locator(".q-drawer").get_by_text("审批队列").click()
    page.wait_for_url(f"{console.base}/registry/approvals")
    ready(page)
    page.get_by_test_id("open-issue").click()
    dialog = page.get_by_test_id("form-issue")
    dialog.get_by_test_id("f-unit-class").fill("CEA-2024")
    dialog.get_by_test_id("f-quantity").fill("250000")
    dialog.get_by_test_id("form-issue-submit").click()
    notification(page, "签发业务")
    queue = page.get_by_test_id("approval-table")
    row = queue.locator("tbody tr").filter(has_text="CEA-2024")
    expect(row).to_contain_text("250,000")
    expect(row).to_contain_text("op1")
    row.get_by_test_id("approve-btn").click()  # maker may not check
    notification(page, "SAME_OPERATOR")
    expect(row).to_have_count(1)
    shot(page, "approvals")

    page = console.user("op2", "/registry/approvals")
    row = page.get_by_test_id("approval-table").locator("tbody tr").filter(has_text="CEA-2024")
    row.get_by_test_id("approve-btn").click()
    notification(page, "已批准")
    expect(row).to_have_count(0)
    console.goto(page, "/")
    expect(
        page.get_by_test_id("totals-table").locator("tbody tr").filter(has_text="CEA-2024")
    ).to_contain_text("250,000")

    # a proposal can also be voided, with a reason
    page.goto(console.base + "/registry/approvals")
    ready(page)
    page.get_by_test_id("open-allocate").click()
    dialog = page.get_by_test_id("form-allocate")
    dialog.get_by_test_id("f-to-account").fill(console.seeded.b)
    dialog.get_by_test_id("f-quantity").fill("1234")
    dialog.get_by_test_id("form-allocate-submit").click()
    notification(page, "分配业务")
    row = page.get_by_test_id("approval-table").locator("tbody tr").filter(has_text="1,234")
    row.get_by_test_id("void-btn").click()
    page.get_by_test_id("form-void").get_by_test_id("f-reason").fill("数量有误")
    page.get_by_test_id("form-void-submit").click()
    notification(page, "已撤销")
    expect(row).to_have_count(0)


def test_serial_search_shows_where_units_are_and_their_history(console: Console) -> None:
    s = console.seeded
    start = s.serial_a.split("-")[5]
    short = f"CN-CEA-2023-420000-1-{start}"
    page = console.user("alice")
    page.locator(".q-drawer").get_by_text("序列号查询").click()
    page.wait_for_url(f"{console.base}/registry/serials")
    ready(page)
    page.get_by_test_id("serial-input").fill(short)
    page.get_by_test_id("serial-search").click()
    expect(page.get_by_test_id("serial-query")).to_contain_text(f"{short}-{start}-")
    expect(page.get_by_test_id("serial-blocks")).to_contain_text(s.a)
    expect(page.get_by_test_id("serial-history")).to_contain_text("分配")
    shot(page, "serials")

    page.get_by_test_id("serial-input").fill("CN-CEA-2023-420000-1-1-5-00")  # bad check digits
    page.get_by_test_id("serial-search").click()
    notification(page, "SERIAL_CHECK_DIGITS")

    console.goto(page, f"/registry/accounts/{s.a}")  # a block serial links to its search
    page.get_by_test_id("blocks-table").get_by_role("link").first.click()
    page.wait_for_url(re.compile(r".*/registry/serials\?q=CN-CEA-2023-"))
    expect(page.get_by_test_id("serial-blocks")).to_contain_text(s.a)


def test_language_switch_to_english_persists_in_the_session(console: Console) -> None:
    page = console.user("op2")
    expect(page.get_by_text("登记总览").first).to_be_visible()
    page.get_by_test_id("lang-toggle").click()
    expect(page.get_by_text("Registry overview").first).to_be_visible()
    expect(page.get_by_test_id("totals-table")).to_contain_text("Issued")
    expect(page.get_by_test_id("market-status")).to_have_text("Open")
    shot(page, "dashboard_en")
    console.goto(page, "/registry/approvals")  # the choice follows the user
    expect(page.get_by_text("Approval queue (maker–checker)")).to_be_visible()
    expect(page.locator(".q-drawer").get_by_text("Serial search")).to_be_visible()
    console.goto(page, f"/registry/accounts/{console.seeded.a}")
    expect(page.get_by_test_id("open-transfer")).to_have_count(0)  # operators order, not trade
    page.get_by_test_id("open-court").click()
    dialog = page.get_by_test_id("form-court")
    expect(dialog).to_contain_text("Court-ordered transfer")
    dialog.get_by_test_id("f-to-account").fill(console.seeded.a)
    dialog.get_by_test_id("f-quantity").fill("1")
    dialog.get_by_test_id("f-legal-basis").fill("(2024) E 01 Zhi 1")
    dialog.get_by_test_id("form-court-submit").click()
    notification(page, "sender and receiver are the same account")  # errors in English too
    shot(page, "account_en")
    page.keyboard.press("Escape")
    page.get_by_test_id("lang-toggle").click()
    expect(page.get_by_text("持有情况")).to_be_visible()


# ------------------------------------------------------------------ account opening and status


def pick(page: Page, field: Locator, option: str | re.Pattern[str]) -> None:
    """Choose `option` in a Quasar select."""
    field.click()
    page.get_by_role("option", name=option, exact=isinstance(option, str)).click()


def test_account_opening_is_requested_by_a_holder_and_decided_by_another_operator(
    console: Console,
) -> None:
    page = console.user("alice", "/registry/accounts")
    page.get_by_test_id("open-request").click()
    dialog = page.get_by_test_id("form-request")
    expect(dialog.get_by_test_id("f-entity")).to_have_count(0)  # a holder applies for itself
    pick(page, dialog.get_by_test_id("f-account-type"), "交易账户")
    dialog.get_by_test_id("f-account-name").fill("华能武汉 交易账户")
    shot(page, "form_request_account")
    dialog.get_by_test_id("form-request-submit").click()
    notification(page, "开户申请")
    mine = page.get_by_test_id("accounts-table").locator("tbody tr").filter(has_text="交易账户")
    expect(mine).to_contain_text("待审批")

    page = console.user("op1", "/registry/accounts")  # an operator applies for an entity
    page.get_by_test_id("open-request").click()
    dialog = page.get_by_test_id("form-request")
    pick(page, dialog.get_by_test_id("f-account-type"), "托管账户")
    dialog.get_by_test_id("f-account-name").fill("武钢 托管账户")
    pick(page, dialog.get_by_test_id("f-entity"), "武汉钢铁有限公司")
    dialog.get_by_test_id("form-request-submit").click()
    notification(page, "开户申请")

    console.goto(page, "/registry/approvals")
    openings = page.get_by_test_id("opening-table")
    own = openings.locator("tbody tr").filter(has_text="武钢 托管账户")
    alices = openings.locator("tbody tr").filter(has_text="华能武汉 交易账户")
    expect(own).to_contain_text("op1")
    expect(alices).to_contain_text("alice")
    own.get_by_test_id("accept-btn").click()  # the requester may not decide
    notification(page, "SAME_OPERATOR")
    expect(own).to_have_count(1)
    shot(page, "approvals_openings", full_page=True)
    alices.get_by_test_id("accept-btn").click()
    notification(page, "已开立")
    expect(alices).to_have_count(0)

    page = console.user("op2", "/registry/approvals")
    own = page.get_by_test_id("opening-table").locator("tbody tr").filter(has_text="武钢 托管账户")
    own.get_by_test_id("reject-btn").click()
    notification(page, "开户申请已拒绝")
    expect(own).to_have_count(0)

    with console.registry() as reg:
        accounts = {a["name"]: a for a in reg.list_accounts(SYSTEM, limit=500)}
    assert accounts["华能武汉 交易账户"]["status"] == "OPEN"
    assert accounts["华能武汉 交易账户"]["approved_by"] == "op1"
    assert accounts["武钢 托管账户"]["status"] == "REJECTED"


def change_status(page: Page, status: str, reason: str) -> Locator:
    page.get_by_test_id("open-status").click()
    dialog = page.get_by_test_id("form-status")
    pick(page, dialog.get_by_test_id("f-status"), status)
    dialog.get_by_test_id("f-reason").fill(reason)
    dialog.get_by_test_id("form-status-submit").click()
    return dialog


def test_operator_changes_account_status_and_only_an_empty_account_closes(
    console: Console,
) -> None:
    s = console.seeded
    empty = console.open_account(s.entity_b, "TRADING", "武钢 交易账户")
    page = console.user("op1", f"/registry/accounts/{s.a}")
    status = page.get_by_test_id("account-status")
    expect(status).to_have_text("正常")

    change_status(page, "待销户", "主体申请销户")
    notification(page, "待销户")
    expect(status).to_have_text("待销户")
    page.get_by_test_id("open-status").click()  # only the allowed next statuses are offered
    dialog = page.get_by_test_id("form-status")
    dialog.get_by_test_id("f-status").click()
    expect(page.get_by_role("option")).to_have_text(["正常", "已销户"])
    page.keyboard.press("Escape")
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)

    dialog = change_status(page, "已销户", "销户")
    notification(page, "ACCOUNT_NOT_EMPTY")  # units are still there
    expect(dialog).to_be_visible()
    shot(page, "account_status_error")
    page.keyboard.press("Escape")
    expect(status).to_have_text("待销户")
    change_status(page, "正常", "撤回销户申请")
    expect(status).to_have_text("正常")
    assert console.account(s.a)["status"] == "OPEN"

    console.goto(page, f"/registry/accounts/{empty}")
    change_status(page, "待销户", "不再使用")
    expect(status).to_have_text("待销户")
    change_status(page, "已销户", "销户")
    expect(status).to_have_text("已销户")
    expect(page.get_by_test_id("open-status")).to_have_count(0)  # closed is final
    assert console.account(empty)["status"] == "CLOSED"


def test_holder_keeps_a_trusted_counterparty_list(console: Console) -> None:
    s = console.seeded
    page = console.user("alice", f"/registry/accounts/{s.a}")
    expect(page.get_by_test_id("open-status")).to_have_count(0)  # operators only
    expect(page.get_by_test_id("open-court")).to_have_count(0)
    expect(page.get_by_test_id("reverse-btn")).to_have_count(0)
    trusted = page.get_by_test_id("trusted-table")
    expect(trusted).to_contain_text("暂无数据")

    page.get_by_test_id("open-trust").click()
    dialog = page.get_by_test_id("form-trust")
    dialog.get_by_test_id("f-trusted-account").fill(s.a)
    dialog.get_by_test_id("form-trust-submit").click()
    notification(page, "SAME_ACCOUNT")
    dialog.get_by_test_id("f-trusted-account").fill(s.b)
    dialog.get_by_test_id("form-trust-submit").click()
    notification(page, "加入可信名单")
    expect(trusted.locator("tbody tr")).to_have_count(1)
    expect(trusted).to_contain_text(s.b)
    expect(trusted).to_contain_text("alice")
    trusted.scroll_into_view_if_needed()
    shot(page, "account_trusted")
    with console.registry() as reg:
        assert [r["trusted_id"] for r in reg.trusted_list(SYSTEM, s.a)] == [s.b]

    trusted.get_by_test_id("untrust-btn").click()
    notification(page, "移出可信名单")
    expect(trusted).to_contain_text("暂无数据")
    with console.registry() as reg:
        assert reg.trusted_list(SYSTEM, s.a) == []


# ------------------------------------------------------------------ operator tools


def submit_form(page: Page, opener: str, form: str, values: dict[str, str]) -> Locator:
    page.get_by_test_id(opener).click()
    dialog = page.get_by_test_id(form)
    for field_id, value in values.items():
        dialog.get_by_test_id(field_id).fill(value)
    dialog.get_by_test_id(f"{form}-submit").click()
    return dialog


def test_operator_suspends_the_market_and_flags_serials(console: Console) -> None:
    s = console.seeded
    page = console.user("op1")
    page.locator(".q-drawer").get_by_text("运营工具").click()
    page.wait_for_url(f"{console.base}/registry/operator")
    ready(page)
    market = page.get_by_test_id("ops-market-status")
    expect(market).to_have_text("正常运行")

    dialog = submit_form(page, "open-market", "form-market", {})
    notification(page, "FIELD_REQUIRED")  # a reason is required
    dialog.get_by_test_id("f-reason").fill("系统维护")
    dialog.get_by_test_id("form-market-submit").click()
    notification(page, "市场已暂停")
    expect(market).to_contain_text("已暂停")
    with console.registry() as reg:
        assert reg.market_suspended()
    shot(page, "operator_tools")
    submit_form(page, "open-market", "form-market", {"f-reason": "维护完成"})
    notification(page, "市场已恢复")
    expect(market).to_have_text("正常运行")
    with console.registry() as reg:
        assert not reg.market_suspended()
        block = reg.blocks(SYSTEM, s.a)[-1]

    unit = f"CN-CEA-2023-420000-{block['batch']}-{block['end']}"
    submit_form(page, "open-flag", "form-flag", {"f-serial": unit, "f-reason": "涉嫌被盗"})
    notification(page, "已标记为可疑")
    with console.registry() as reg:
        assert reg.serial(SYSTEM, unit)["tainted"]
    dialog = submit_form(page, "open-unflag", "form-unflag", {"f-serial": s.serial_a})
    notification(page, "FLAG_NOT_FOUND")  # clearing needs exactly the flagged range
    dialog.get_by_test_id("f-serial").fill(unit)
    dialog.get_by_test_id("form-unflag-submit").click()
    notification(page, "可疑标记已清除")
    with console.registry() as reg:
        assert not reg.serial(SYSTEM, unit)["tainted"]

    submit_form(  # the tools page proposes reversals too (see the account history for more)
        page, "open-reverse", "form-reverse", {"f-transfer-id": "no-such-id", "f-reason": "x"}
    )
    notification(page, "TRANSFER_NOT_FOUND")
    page.keyboard.press("Escape")


def test_court_ordered_transfer_consumes_a_judicial_freeze(console: Console) -> None:
    s = console.seeded
    with console.registry() as reg:
        freeze = reg.place_hold(
            console.seeded.actors["op2"],
            key(),
            account_id=s.a,
            unit_class="CEA-2023",
            quantity=700,
            kind="JUDICIAL_FREEZE",
            legal_basis="（2024）鄂01执保12号",
        )["id"]
    b_before = console.posted(s.b)["posted"]
    page = console.user("op1", "/registry/operator")
    page.get_by_test_id("open-court").click()
    dialog = page.get_by_test_id("form-court")
    dialog.get_by_test_id("f-from-account").fill(s.a)
    dialog.get_by_test_id("f-from-account").press("Enter")  # reads the account's freezes
    pick(page, dialog.get_by_test_id("f-freeze"), re.compile(freeze[-12:]))
    expect(dialog.get_by_test_id("f-unit-class")).to_have_value("CEA-2023")
    expect(dialog.get_by_test_id("f-quantity")).to_have_value("700")
    dialog.get_by_test_id("f-to-account").fill(s.b)
    dialog.get_by_test_id("f-legal-basis").fill("（2024）鄂01执123号")
    shot(page, "form_court")
    dialog.get_by_test_id("form-court-submit").click()
    notification(page, "司法扣划业务")
    assert console.posted(s.a)["held"] == 0  # the freeze became the pending court transfer

    page = console.user("op2", "/registry/approvals")  # a second operator approves it
    row = page.get_by_test_id("approval-table").locator("tbody tr").filter(has_text="司法扣划")
    expect(row).to_contain_text("700")
    row.get_by_test_id("approve-btn").click()
    notification(page, "已批准")
    expect(row).to_have_count(0)
    assert console.posted(s.b)["posted"] == b_before + 700


def test_reversal_is_proposed_from_the_account_history(console: Console) -> None:
    s = console.seeded
    with console.registry() as reg:
        surrendered = reg.surrender(
            s.actors["alice"],
            key(),
            from_account=s.a,
            unit_class="CEA-2023",
            quantity=100,
            compliance_year=2023,
        )["id"]
    a_before = console.posted(s.a)["posted"]
    page = console.user("op1", f"/registry/accounts/{s.a}")
    history = page.get_by_test_id("history-table")
    row = history.locator("tbody tr").filter(has_text=surrendered[-12:])
    row.get_by_test_id("reverse-btn").click()
    dialog = page.get_by_test_id("form-reverse")
    expect(dialog.get_by_test_id("f-transfer-id")).to_have_value(surrendered)
    dialog.get_by_test_id("f-reason").fill("误清缴，主管部门同意冲正")
    shot(page, "form_reverse")
    dialog.get_by_test_id("form-reverse-submit").click()
    notification(page, "冲正业务")
    reversal = history.locator("tbody tr").filter(
        has=page.get_by_role("cell", name="冲正", exact=True)
    )
    expect(reversal).to_contain_text("待处理")
    expect(reversal.get_by_test_id("reverse-btn")).to_have_count(0)  # only completed ones

    row.get_by_test_id("reverse-btn").click()  # one reversal per transfer
    dialog.get_by_test_id("f-reason").fill("再次冲正")
    dialog.get_by_test_id("form-reverse-submit").click()
    notification(page, "ALREADY_REVERSED")
    page.keyboard.press("Escape")

    page = console.user("op2", "/registry/approvals")
    row = page.get_by_test_id("approval-table").locator("tbody tr").filter(has_text="冲正")
    row.get_by_test_id("approve-btn").click()
    notification(page, "已批准")
    expect(row).to_have_count(0)
    assert console.posted(s.a)["posted"] == a_before + 100


# ------------------------------------------------------------------ journal


def test_journal_shows_entries_receipts_and_verifies(console: Console) -> None:
    page = console.user("op1")
    page.locator(".q-drawer").get_by_text("业务日志").click()
    page.wait_for_url(f"{console.base}/journal")
    ready(page)
    rows = page.get_by_test_id("journal-table").locator("tbody tr")
    expect(page.get_by_test_id("journal-table")).to_contain_text("registry.")
    seq = int(rows.first.locator("td").first.inner_text())

    rows.first.get_by_test_id("receipt-btn").click()
    receipt = page.get_by_test_id("receipt")
    expect(receipt).to_contain_text(f"#{seq}")
    expect(receipt.get_by_test_id("receipt-proof")).to_have_text("证明校验通过")
    with console.registry() as reg, reg.db.read() as uow:
        expected = journal.receipt(uow.conn, seq)
    assert expected is not None
    expect(receipt.get_by_test_id("receipt-root")).to_have_text(expected["merkle_root"])
    expect(receipt.get_by_test_id("receipt-hash")).to_have_text(expected["entry"]["hash"])
    shot(page, "journal_receipt")
    receipt.get_by_test_id("receipt-close").click()
    expect(receipt).to_have_count(0)

    page.get_by_test_id("verify-run").click()
    expect(page.get_by_test_id("verify-status")).to_contain_text("校验通过")
    shot(page, "journal")

    page = console.user("alice", "/journal")  # operators only
    expect(page.get_by_test_id("forbidden")).to_be_visible()
    expect(page.get_by_test_id("journal-table")).to_have_count(0)
    expect(page.locator(".q-drawer").get_by_text("业务日志")).to_have_count(0)


def test_every_console_label_has_both_languages() -> None:
    """Every literal text key in the console's source is defined, in Chinese and in English.
    (Read from the source, so this test needs neither NiceGUI nor the server.)"""
    source = Path(__file__).resolve().parent.parent / "src" / "carbonhub" / "console"
    texts: dict[str, tuple[str, str]] = {}
    for node in ast.walk(ast.parse((source / "i18n.py").read_text())):
        if isinstance(node, ast.AnnAssign) and ast.unparse(node.target) == "TEXTS":
            assert node.value is not None
            texts = ast.literal_eval(node.value)
    prefixes = {k.split(".")[0] for k in texts}
    used = {
        literal
        for path in source.glob("*.py")
        for literal in re.findall(r'"([a-z]+\.[a-z_.]*[a-z_])"', path.read_text())
        if literal.split(".")[0] in prefixes
    }
    assert len(used) > 100
    assert sorted(used - set(texts)) == []
    assert all(zh and en for zh, en in texts.values())
