"""Console texts in Simplified Chinese (default) and English.

Every label the console shows goes through `t(key)`. Other contexts add their own texts with
`register({...})` before their pages are built. The chosen language lives in the user's session
(`app.storage.user["lang"]`), so it survives reloads and follows the user from page to page.
"""

from __future__ import annotations

from typing import Final, Literal

from nicegui import app

from carbonhub.core.errors import DomainError

Lang = Literal["zh", "en"]
LANGS: Final[tuple[Lang, ...]] = ("zh", "en")
DEFAULT_LANG: Final[Lang] = "zh"
SESSION_LANG: Final = "lang"

# key -> (zh, en)
TEXTS: dict[str, tuple[str, str]] = {
    # shell
    "app.name": ("碳枢 carbonhub", "碳枢 carbonhub"),
    "app.tagline": ("开放碳市场平台", "Open carbon-market platform"),
    "lang.switch": ("English", "中文"),
    "lang.switch.tip": ("切换到英文", "Switch to Chinese"),
    "nav.menu": ("菜单", "Menu"),
    "nav.dashboard": ("总览", "Dashboard"),
    "nav.accounts": ("登记账户", "Accounts"),
    "nav.approvals": ("审批队列", "Approval queue"),
    "nav.serials": ("序列号查询", "Serial search"),
    "nav.section.registry": ("注册登记", "Registry"),
    "nav.operator": ("运营工具", "Operator tools"),
    "nav.journal": ("业务日志", "Journal"),
    "nav.section.audit": ("审计", "Audit"),
    "logout": ("退出登录", "Log out"),
    "login.title": ("登录", "Sign in"),
    "login.username": ("用户名", "Username"),
    "login.password": ("密码", "Password"),
    "login.submit": ("登录", "Sign in"),
    "login.failed": ("登录失败", "Sign-in failed"),
    "role.operator": ("登记机构操作员", "registry operator"),
    "role.enterprise": ("重点排放单位", "covered enterprise"),
    "role.verifier": ("核查机构", "verifier"),
    "role.member": ("交易会员", "exchange member"),
    "role.bank": ("结算银行", "settlement bank"),
    "role.partner": ("数据合作方", "data partner"),
    "role.participant": ("普惠参与者", "inclusion participant"),
    "role.lender": ("金融机构", "lender"),
    "role.public": ("公众", "public"),
    "common.none": ("暂无数据", "No data"),
    "common.close": ("关闭", "Close"),
    "common.cancel": ("取消", "Cancel"),
    "common.submit": ("提交", "Submit"),
    "common.search": ("查询", "Search"),
    "common.next_page": ("下一页", "Next page"),
    "common.first_page": ("第一页", "First page"),
    "common.error": ("操作失败", "Failed"),
    "common.done": ("操作成功", "Done"),
    "common.tonnes": ("吨", "t"),
    "common.yes": ("是", "yes"),
    "common.no": ("否", "no"),
    "common.reason": ("事由", "Reason"),
    "common.reason_optional": ("事由（选填）", "Reason (optional)"),
    "common.actions": ("操作", "Actions"),
    # dashboard
    "dash.title": ("登记总览", "Registry overview"),
    "dash.totals": ("按单位类别统计（吨）", "Totals by unit class (t)"),
    "dash.chart": ("登记总量图", "Registry totals chart"),
    "dash.market": ("市场状态", "Market status"),
    "dash.market.open": ("正常运行", "Open"),
    "dash.market.suspended": (
        "已暂停（分配与清缴仍可进行）",
        "Suspended (allocation and surrender go on)",
    ),
    "dash.welcome": ("欢迎，{user}", "Welcome, {user}"),
    # unit class totals
    "col.unit_class": ("单位类别", "Unit class"),
    "col.issued": ("已签发", "Issued"),
    "col.unallocated": ("未分配", "Unallocated"),
    "col.held": ("持有", "Held"),
    "col.surrendered": ("已清缴", "Surrendered"),
    "col.cancelled": ("已注销", "Cancelled"),
    # accounts
    "acc.title": ("登记账户", "Registry accounts"),
    "acc.detail": ("账户详情", "Account"),
    "acc.id": ("账户号", "Account"),
    "acc.name": ("账户名称", "Name"),
    "acc.entity": ("账户主体", "Holder"),
    "acc.type": ("类型", "Type"),
    "acc.status": ("状态", "Status"),
    "acc.opened": ("开户时间", "Opened"),
    "acc.holdings": ("持有情况", "Holdings"),
    "acc.blocks": ("序列号区块", "Serial blocks"),
    "acc.history": ("业务记录", "History"),
    "acc.holds": ("生效中的冻结", "Active holds"),
    "acc.back": ("返回账户列表", "Back to accounts"),
    "col.posted": ("已入账", "Posted"),
    "col.pending": ("在途", "Pending"),
    "col.held_units": ("冻结", "Held"),
    "col.available": ("可用", "Available"),
    "col.serial": ("序列号", "Serial"),
    "col.size": ("数量（吨）", "Size (t)"),
    "col.tainted": ("可疑标记", "Tainted"),
    "col.time": ("时间", "Time"),
    "col.op": ("业务", "Operation"),
    "col.status": ("状态", "Status"),
    "col.from": ("转出账户", "From"),
    "col.to": ("转入账户", "To"),
    "col.quantity": ("数量（吨）", "Quantity (t)"),
    "col.proposed_by": ("经办人", "Proposed by"),
    "col.approved_by": ("复核人", "Approved by"),
    "col.expires": ("到期", "Expires"),
    "col.kind": ("冻结类型", "Hold kind"),
    "col.lien_holder": ("质权人", "Lien holder"),
    "col.created_by": ("设置人", "Placed by"),
    "col.account": ("账户", "Account"),
    "col.range": ("区间", "Range"),
    "col.start": ("起始号", "Start"),
    "col.end": ("截止号", "End"),
    "col.id": ("业务号", "Id"),
    "col.beneficiary": ("受益人", "Beneficiary"),
    "type.ISSUANCE": ("签发账户", "Issuance"),
    "type.HOLDING": ("持有账户", "Holding"),
    "type.TRADING": ("交易账户", "Trading"),
    "type.CUSTODY": ("托管账户", "Custody"),
    "type.SURRENDER": ("清缴账户", "Surrender"),
    "type.CANCELLATION": ("注销账户", "Cancellation"),
    "status.REQUESTED": ("待审批", "Requested"),
    "status.REJECTED": ("已拒绝", "Rejected"),
    "status.OPEN": ("正常", "Open"),
    "status.RESTRICTED": ("受限", "Restricted"),
    "status.SUSPENDED": ("暂停", "Suspended"),
    "status.CLOSURE_PENDING": ("待销户", "Closure pending"),
    "status.CLOSED": ("已销户", "Closed"),
    "tstatus.PENDING": ("待处理", "Pending"),
    "tstatus.COMPLETED": ("已完成", "Completed"),
    "tstatus.VOIDED": ("已撤销", "Voided"),
    "tstatus.EXPIRED": ("已过期", "Expired"),
    "op.ISSUE": ("签发", "Issuance"),
    "op.ALLOCATE": ("分配", "Allocation"),
    "op.TRANSFER": ("转让", "Transfer"),
    "op.SURRENDER": ("清缴", "Surrender"),
    "op.CANCEL": ("自愿注销", "Voluntary cancellation"),
    "op.COURT_TRANSFER": ("司法扣划", "Court-ordered transfer"),
    "op.REVERSAL": ("冲正", "Reversal"),
    "hold.PLEDGE": ("质押", "Pledge"),
    "hold.JUDICIAL_FREEZE": ("司法冻结", "Judicial freeze"),
    "hold.EXCHANGE_RESERVATION": ("交易预留", "Exchange reservation"),
    # forms
    "form.transfer": ("转让", "Transfer"),
    "form.surrender": ("清缴", "Surrender"),
    "form.cancel": ("自愿注销", "Cancel voluntarily"),
    "form.hold": ("设置冻结", "Place hold"),
    "form.release": ("解除冻结", "Release hold"),
    "form.issue": ("提议签发", "Propose issuance"),
    "form.allocate": ("提议分配", "Propose allocation"),
    "form.to_account": ("转入账户号", "Receiving account"),
    "form.unit_class": ("单位类别", "Unit class"),
    "form.quantity": ("数量（吨）", "Quantity (t)"),
    "form.compliance_year": ("履约年度", "Compliance year"),
    "form.beneficiary": ("受益人", "Beneficiary"),
    "form.hold_kind": ("冻结类型", "Hold kind"),
    "form.lien_holder": ("质权人（质押时必填）", "Lien holder (for a pledge)"),
    "form.legal_basis": ("法律依据（司法冻结必填）", "Legal basis (for a judicial freeze)"),
    "form.origin": ("来源代码", "Origin code"),
    "form.account": ("账户号", "Account"),
    "form.key": ("幂等键", "Idempotency key"),
    "result.transfer": (
        "{op}业务 {id} 已提交，状态：{status}，数量 {quantity} 吨",
        "{op} {id} submitted: {status}, {quantity} t",
    ),
    "result.hold": ("冻结 {id} 已设置：{quantity} 吨", "Hold {id} placed: {quantity} t"),
    "result.released": ("冻结 {id} 已解除", "Hold {id} released"),
    # approvals
    "appr.title": ("审批队列（经办–复核）", "Approval queue (maker–checker)"),
    "appr.hint": (
        "经办人不能复核自己提交的业务；由另一位操作员批准或撤销。",
        "The proposer cannot approve their own proposal; another operator approves or voids it.",
    ),
    "appr.approve": ("批准", "Approve"),
    "appr.void": ("撤销", "Void"),
    "appr.approved": ("业务 {id} 已批准，状态：{status}", "Transfer {id} approved: {status}"),
    "appr.voided": ("业务 {id} 已撤销", "Transfer {id} voided"),
    "appr.empty": ("没有待审批的业务", "Nothing awaits approval"),
    # serials
    "ser.title": ("序列号查询", "Serial search"),
    "ser.input": ("序列号（单个单位或区块）", "Serial (one unit or a block)"),
    "ser.hint": (
        "例如 CN-CEA-2023-420000-1-57 或带校验位的区块序列号",
        "e.g. CN-CEA-2023-420000-1-57, or a block serial with check digits",
    ),
    "ser.query": ("查询序列号", "Query"),
    "ser.current": ("当前所在区块", "Current blocks"),
    "ser.history": ("流转记录", "History"),
    "ser.tainted": ("该区间带有可疑标记", "These serials carry a tainted flag"),
    "ser.clean": ("无可疑标记", "No tainted flag"),
    # account opening
    "form.request_account": ("申请开户", "Request an account"),
    "form.account_type": ("账户类型", "Account type"),
    "form.account_name": ("账户名称", "Account name"),
    "form.entity": ("账户主体（登记机构代为申请）", "Holder (when the registry applies for it)"),
    "result.requested": (
        "开户申请 {id} 已提交，等待登记机构审批",
        "Account {id} requested; it awaits the registry's approval",
    ),
    "appr.openings": ("开户申请", "Account opening requests"),
    "appr.openings.hint": (
        "申请人不能审批自己提交的开户申请。",
        "The requester cannot decide their own opening request.",
    ),
    "appr.openings.empty": ("没有待审批的开户申请", "No opening request awaits a decision"),
    "appr.transfers": ("待复核业务", "Proposals awaiting approval"),
    "appr.reject": ("拒绝", "Reject"),
    "appr.account_approved": ("账户 {id} 已开立", "Account {id} opened"),
    "appr.account_rejected": ("账户 {id} 的开户申请已拒绝", "Opening of account {id} rejected"),
    "col.requested_by": ("申请人", "Requested by"),
    # account status
    "form.status": ("变更账户状态", "Change account status"),
    "form.target_status": ("新状态", "New status"),
    "form.current_status": ("当前状态：{status}", "Current status: {status}"),
    "form.status_hint": (
        "只有余额和在途业务均为零的账户才能销户；销户后不可恢复。",
        "Only an account with no units and nothing pending can close; a closed account never "
        "reopens.",
    ),
    "form.status_final": ("该账户状态不可再变更", "This account's status is final"),
    "result.status": ("账户 {id} 状态已变更为：{status}", "Account {id} is now: {status}"),
    # trusted counterparties
    "acc.trusted": ("可信账户名单", "Trusted counterparties"),
    "acc.trusted.hint": (
        "转让至名单内账户不受延迟和单笔上限限制。",
        "Transfers to listed accounts skip the delay and the per-transfer cap.",
    ),
    "form.trust": ("添加可信账户", "Add a trusted account"),
    "form.trusted_account": ("可信账户号", "Trusted account"),
    "form.untrust": ("移出", "Remove"),
    "col.trusted_id": ("可信账户", "Trusted account"),
    "col.added_by": ("添加人", "Added by"),
    "col.added_at": ("添加时间", "Added"),
    "result.trusted": ("已将 {id} 加入可信名单", "{id} added to the trusted list"),
    "result.untrusted": ("已将 {id} 移出可信名单", "{id} removed from the trusted list"),
    # operator tools
    "ops.title": ("登记机构运营工具", "Registry operator tools"),
    "ops.forbidden": (
        "仅登记机构操作员可使用此页面 (ROLE_NOT_ALLOWED)",
        "Only registry operators may use this page (ROLE_NOT_ALLOWED)",
    ),
    "ops.market": ("全市场暂停 / 恢复", "Market-wide suspension"),
    "ops.market.hint": (
        "暂停期间转让与自愿注销停止；签发、分配、清缴、司法扣划和冲正照常进行。",
        "While suspended, transfers and voluntary cancellations stop; issuance, allocation, "
        "surrender, court orders and reversals go on.",
    ),
    "ops.suspend": ("暂停市场", "Suspend the market"),
    "ops.resume": ("恢复市场", "Resume the market"),
    "result.suspended": ("市场已暂停", "The market is suspended"),
    "result.resumed": ("市场已恢复运行", "The market is open again"),
    "ops.serials": ("可疑序列号", "Tainted serials"),
    "ops.serials.hint": (
        "被标记的序列号区间不能转出；清除标记须填写与标记时完全相同的区间。",
        "A flagged serial range cannot move; clearing needs exactly the flagged range.",
    ),
    "form.flag": ("标记可疑序列号", "Flag serials"),
    "form.unflag": ("清除可疑标记", "Clear a flag"),
    "form.serial": ("序列号（单个单位或区块）", "Serial (one unit or a block)"),
    "result.flagged": ("{serial} 已标记为可疑", "{serial} flagged as tainted"),
    "result.unflagged": ("{serial} 的可疑标记已清除", "Flag on {serial} cleared"),
    "ops.court": ("司法扣划", "Court-ordered transfer"),
    "ops.court.hint": (
        "依据法院裁定从账户扣划，须另一位操作员复核；可消耗该账户一项生效中的司法冻结。",
        "Moves units under a court order, approved by a second operator; it may consume one of "
        "the account's active judicial freezes.",
    ),
    "form.court": ("司法扣划", "Court-ordered transfer"),
    "form.from_account": ("转出账户号", "Sending account"),
    "form.court_basis": ("法律依据（裁定书文号）", "Legal basis (court order number)"),
    "form.freeze": ("消耗的司法冻结（选填）", "Judicial freeze to consume (optional)"),
    "form.freeze_option": (
        "{id} · {unit_class} · {quantity} 吨",
        "{id} · {unit_class} · {quantity} t",
    ),
    "form.load_freezes": ("读取该账户的司法冻结", "Load the account's judicial freezes"),
    "ops.reverse": ("冲正", "Reversal"),
    "ops.reverse.hint": (
        "在冲正期限内对已完成的业务提出冲正，须另一位操作员复核。",
        "Propose reversing a completed transfer within its reversal window; a second operator "
        "approves.",
    ),
    "form.reverse": ("提议冲正", "Propose reversal"),
    "form.transfer_id": ("业务号", "Transfer id"),
    "ops.queue": (
        "待复核的司法扣划和冲正在审批队列中",
        "Pending court orders and reversals wait in the approval queue",
    ),
    # journal
    "jr.title": ("业务日志（哈希链）", "Journal (hash chain)"),
    "jr.hint": (
        "每条日志包含前一条的哈希；每日检查点为当日日志哈希的 Merkle 根。",
        "Each entry includes the previous entry's hash; each day's checkpoint is the Merkle root "
        "of that day's hashes.",
    ),
    "col.seq": ("序号", "Seq"),
    "col.type": ("类型", "Type"),
    "col.actor": ("操作人", "Actor"),
    "col.payload": ("内容", "Content"),
    "col.hash": ("哈希", "Hash"),
    "jr.receipt": ("回执", "Receipt"),
    "jr.receipt.title": ("日志回执 #{seq}", "Receipt for entry #{seq}"),
    "jr.day": ("日期", "Day"),
    "jr.leaf": ("叶子位置 / 当日条数", "Leaf / entries that day"),
    "jr.prev_hash": ("前一哈希", "Previous hash"),
    "jr.proof": ("Merkle 包含证明", "Merkle inclusion proof"),
    "jr.proof_empty": ("（当日仅此一条，证明为空）", "(the day's only entry: empty proof)"),
    "jr.root": ("Merkle 根", "Merkle root"),
    "jr.checkpoint": ("检查点", "Checkpoint"),
    "jr.checkpointed": ("已发布的每日检查点", "Published daily checkpoint"),
    "jr.provisional": ("临时根（当日尚未结账）", "Provisional root (the day is not closed yet)"),
    "jr.proof_ok": ("证明校验通过", "The proof verifies"),
    "jr.proof_bad": ("证明校验失败", "The proof does not verify"),
    "jr.not_found": (
        "日志条目 {seq} 不存在 (ENTRY_NOT_FOUND)",
        "No journal entry {seq} (ENTRY_NOT_FOUND)",
    ),
    "jr.verify": ("全面校验", "Verify everything"),
    "jr.verify.hint": (
        "重算整条哈希链与检查点，核对账本不变量并重放日志。",
        "Recomputes the chain and checkpoints, checks the ledger invariants and replays the "
        "journal.",
    ),
    "jr.verify.ok": (
        "校验通过：{entries} 条日志，未发现问题",
        "Verified: {entries} entries, no problems",
    ),
    "jr.verify.bad": ("发现 {count} 个问题", "{count} problems found"),
}


def register(texts: dict[str, tuple[str, str]]) -> None:
    """Add a context's texts; a key may be defined once."""
    clash = sorted(set(texts) & set(TEXTS))
    if clash:
        raise ValueError(f"console texts defined twice: {', '.join(clash)}")
    TEXTS.update(texts)


def lang() -> Lang:
    """The current user's language; Chinese outside a page or when nothing was chosen."""
    try:
        value = app.storage.user.get(SESSION_LANG, DEFAULT_LANG)
    except (RuntimeError, AssertionError):
        return DEFAULT_LANG
    return "en" if value == "en" else "zh"


def set_lang(value: Lang) -> None:
    app.storage.user[SESSION_LANG] = value


def t(key: str, **values: object) -> str:
    """The text for `key` in the current language; an unknown key shows itself."""
    pair = TEXTS.get(key)
    if pair is None:
        return key
    text = pair[1] if lang() == "en" else pair[0]
    return text.format(**values) if values else text


def error_text(err: DomainError) -> str:
    """A domain error in the current language, with its stable code."""
    message = err.message if lang() == "en" else err.message_zh
    return f"{message} ({err.code})"
