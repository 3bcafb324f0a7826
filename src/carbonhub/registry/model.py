"""Registry rules as pure data and functions: no I/O, no clock, no database.

Shapes:
  Holding:  (account, unit class) → posted, pending, held;  available = posted − pending − held
  Block:    (unit class, origin, batch, start, end), 1-based inclusive serial range, 1 unit = 1 t
  Serial:   {REG}-{UNIT}-{PERIOD}-{ORIGIN}-{BATCH}-{START}-{END}-{CC}, CC = ISO 7064 mod 97-10
  Operation: code → allowed sender/receiver account types, unit kinds, initiators, approval,
             delay and limit outside the trusted list, market-suspend pass, reversal window
Sources: research/registry-anchors.md B1–B4, B9 (UK ETS TransactionType, UNDP serial split rule).
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import pairwise
from typing import NamedTuple

from carbonhub.core.errors import Conflict, DomainError, Forbidden, InvalidInput, NotFound

# ---------------------------------------------------------------- check digits (ISO 7064 mod 97-10)


def _numeric(text: str) -> str:
    """Letters become two digits (A=10 … Z=35), as in IBAN and the UK ETS account identifier."""
    return "".join(str(int(ch, 36)) if ch.isalpha() else ch for ch in text.upper() if ch.isalnum())


def check_digits(text: str) -> str:
    return f"{98 - int(_numeric(text) + '00') % 97:02d}"


def check_digits_valid(text: str, cc: str) -> bool:
    return len(cc) == 2 and cc.isdigit() and int(_numeric(text) + cc) % 97 == 1


# ---------------------------------------------------------------- accounts


class AccountType(StrEnum):
    ISSUANCE = "ISSUANCE"  # the registry operator's issuance (total quantity) account
    HOLDING = "HOLDING"  # one per legal entity (登记账户)
    TRADING = "TRADING"  # trading-linked holding account
    CUSTODY = "CUSTODY"  # units held for another (carbon custody)
    SURRENDER = "SURRENDER"  # compliance surrender (清缴)
    CANCELLATION = "CANCELLATION"  # voluntary cancellation (自愿注销)


TYPE_CODES: dict[AccountType, str] = {
    AccountType.ISSUANCE: "100",
    AccountType.SURRENDER: "110",
    AccountType.CANCELLATION: "120",
    AccountType.HOLDING: "200",
    AccountType.TRADING: "210",
    AccountType.CUSTODY: "300",
}
SYSTEM_TYPES = frozenset({AccountType.ISSUANCE, AccountType.SURRENDER, AccountType.CANCELLATION})
HOLDER_TYPES = frozenset({AccountType.HOLDING, AccountType.TRADING, AccountType.CUSTODY})
_ACCOUNT_ID = re.compile(r"^([A-Z]{2})-(\d{3})-(\d{7})-(\d{2})$")


def make_account_id(registry: str, type_: AccountType, seq: int) -> str:
    body = f"{registry}-{TYPE_CODES[type_]}-{seq:07d}"
    return f"{body}-{check_digits(body)}"


@functools.lru_cache(maxsize=65536)
def _valid_account_id(text: str) -> bool:
    m = _ACCOUNT_ID.fullmatch(text)
    return bool(
        m and m.group(2) in TYPE_CODES.values() and check_digits_valid(text[:-3], m.group(4))
    )


def parse_account_id(text: object) -> str:
    """Validates format and check digits; returns the id. `CN-200-0000001-42`."""
    if not isinstance(text, str):
        raise InvalidInput("ACCOUNT_ID_MALFORMED", "account id must be text", "账户号格式错误")
    if _valid_account_id(text):
        return text
    m = _ACCOUNT_ID.fullmatch(text)
    if not m or m.group(2) not in TYPE_CODES.values():
        raise InvalidInput(
            "ACCOUNT_ID_MALFORMED",
            f"account id {text!r} is not of the form CN-200-0000001-CC",
            f"账户号 {text!r} 格式错误",
        )
    if not check_digits_valid(text[:-3], m.group(4)):
        raise InvalidInput(
            "ACCOUNT_ID_CHECK_DIGITS",
            f"account id {text!r} has wrong check digits",
            f"账户号 {text!r} 校验位错误",
        )
    return text


class AccountStatus(StrEnum):
    REQUESTED = "REQUESTED"
    REJECTED = "REJECTED"
    OPEN = "OPEN"
    RESTRICTED = "RESTRICTED"  # only surrender and reversals may leave
    SUSPENDED = "SUSPENDED"  # nothing moves but court orders
    CLOSURE_PENDING = "CLOSURE_PENDING"
    CLOSED = "CLOSED"  # never reopens


STATUS_TRANSITIONS: dict[AccountStatus, frozenset[AccountStatus]] = {
    AccountStatus.REQUESTED: frozenset({AccountStatus.OPEN, AccountStatus.REJECTED}),
    AccountStatus.REJECTED: frozenset(),
    AccountStatus.OPEN: frozenset(
        {AccountStatus.RESTRICTED, AccountStatus.SUSPENDED, AccountStatus.CLOSURE_PENDING}
    ),
    AccountStatus.RESTRICTED: frozenset(
        {AccountStatus.OPEN, AccountStatus.SUSPENDED, AccountStatus.CLOSURE_PENDING}
    ),
    AccountStatus.SUSPENDED: frozenset(
        {AccountStatus.OPEN, AccountStatus.RESTRICTED, AccountStatus.CLOSURE_PENDING}
    ),
    AccountStatus.CLOSURE_PENDING: frozenset({AccountStatus.OPEN, AccountStatus.CLOSED}),
    AccountStatus.CLOSED: frozenset(),
}


def check_status_change(
    current: str, target: str, *, balance_t: int, pending_t: int
) -> AccountStatus:
    try:
        to = AccountStatus(target)
    except ValueError:
        raise InvalidInput(
            "STATUS_UNKNOWN", f"unknown account status {target!r}", "未知账户状态"
        ) from None
    if to not in STATUS_TRANSITIONS[AccountStatus(current)]:
        raise Conflict(
            "STATUS_TRANSITION_NOT_ALLOWED",
            f"an account cannot go from {current} to {to.value}",
            f"账户状态不能从 {current} 变为 {to.value}",
        )
    if to is AccountStatus.CLOSED and (balance_t or pending_t):
        raise Conflict(
            "ACCOUNT_NOT_EMPTY",
            "an account with units or pending transfers cannot close",
            "账户仍有余额或在途业务，不能关闭",
        )
    return to


# ---------------------------------------------------------------- unit classes and serials


class UnitKind(StrEnum):
    CEA = "CEA"  # allowance, by compliance year
    CCER = "CCER"  # certified voluntary reduction, by project and vintage
    PHCER = "PHCER"  # carbon-inclusion credit, by method and vintage


ORIGIN = re.compile(r"^[A-Z0-9]{1,20}$")
_CLASS = re.compile(r"^(CEA|CCER|PHCER)-(\d{4})(?:-([A-Z0-9]{1,20}))?$")


@dataclass(frozen=True)
class UnitClass:
    kind: UnitKind
    period: int
    project: str = ""  # CCER project id or PHCER method code; empty for CEA

    @property
    def code(self) -> str:
        return f"{self.kind.value}-{self.period}" + (f"-{self.project}" if self.project else "")


def parse_unit_class(text: object) -> UnitClass:
    m = _CLASS.fullmatch(text) if isinstance(text, str) else None
    if not m:
        raise InvalidInput(
            "UNIT_CLASS_MALFORMED",
            f"unit class {text!r} is not like CEA-2023 or CCER-2021-P0001",
            "单位类别格式错误",
        )
    kind, period, project = UnitKind(m.group(1)), int(m.group(2)), m.group(3) or ""
    if not 2000 <= period <= 2100:
        raise InvalidInput("UNIT_CLASS_PERIOD", f"period {period} is out of range", "年度超出范围")
    if (kind is UnitKind.CEA) != (project == ""):
        raise InvalidInput(
            "UNIT_CLASS_MALFORMED",
            "CEA classes have no project; CCER and PHCER classes need one",
            "单位类别格式错误",
        )
    return UnitClass(kind, period, project)


class Block(NamedTuple):
    """A serial range held as one row. Tuple order is serial order (class, origin, batch,
    start); a NamedTuple compares and hashes in C, which the batch engine leans on."""

    unit_class: str
    origin: str
    batch: int
    start: int
    end: int

    @property
    def size(self) -> int:
        return self.end - self.start + 1

    def contains(self, other: Block) -> bool:
        return (
            (self.unit_class, self.origin, self.batch)
            == (other.unit_class, other.origin, other.batch)
            and self.start <= other.start
            and other.end <= self.end
        )

    def overlaps(self, other: Block) -> bool:
        return (
            (self.unit_class, self.origin, self.batch)
            == (other.unit_class, other.origin, other.batch)
            and self.start <= other.end
            and other.start <= self.end
        )

    def serial(self, registry: str) -> str:
        uc = parse_unit_class(self.unit_class)
        body = f"{registry}-{uc.kind.value}-{uc.period}-{self.origin}-{self.batch}-{self.start}-{self.end}"
        return f"{body}-{check_digits(body)}"

    def key(self) -> tuple[str, int, int, int]:
        return (self.origin, self.batch, self.start, self.end)


_SERIAL = re.compile(
    r"^([A-Z]{2})-(CEA|CCER|PHCER)-(\d{4})-([A-Z0-9]{1,20})-([1-9]\d{0,5})-([1-9]\d{0,12})"
    r"(?:-([1-9]\d{0,12})-(\d{2}))?$"
)


def class_for(kind: str, period: int, origin: str) -> str:
    return f"{kind}-{period}" if kind == UnitKind.CEA.value else f"{kind}-{period}-{origin}"


def parse_serial(text: object, registry: str) -> Block:
    """A block serial with check digits, or the short form of one unit: CN-CEA-2023-420000-1-57."""
    m = _SERIAL.fullmatch(text.strip().upper()) if isinstance(text, str) else None
    if not m:
        raise InvalidInput(
            "SERIAL_MALFORMED",
            f"serial {text!r} is not {{REG}}-{{UNIT}}-{{PERIOD}}-{{ORIGIN}}-{{BATCH}}-{{START}}-{{END}}-{{CC}}",
            f"序列号 {text!r} 格式错误",
        )
    reg, kind, period, origin, batch, start, end, cc = m.groups()
    assert isinstance(text, str)
    if reg != registry:
        raise InvalidInput(
            "SERIAL_REGISTRY",
            f"serial belongs to registry {reg}, not {registry}",
            "序列号不属于本登记系统",
        )
    if end is not None:
        if not check_digits_valid(text.strip().upper()[:-3], cc):
            raise InvalidInput(
                "SERIAL_CHECK_DIGITS",
                f"serial {text!r} has wrong check digits",
                f"序列号 {text!r} 校验位错误",
            )
        if int(end) < int(start):
            raise InvalidInput("SERIAL_RANGE", "serial end is before its start", "序列号区间错误")
    uc = class_for(kind, int(period), origin)
    parse_unit_class(uc)
    return Block(uc, origin, int(batch), int(start), int(end if end is not None else start))


@dataclass(frozen=True)
class Split:
    """Result of taking units from a holder's blocks: what moves, what the sender keeps."""

    moved: list[Block]
    removed: list[Block]  # sender's blocks consumed whole or split
    kept: list[Block]  # sender's remainders of split blocks


def take_order(b: Block) -> tuple[int, Block]:
    """Largest block first, then serial order: a movement splits at most one block, so a
    holding stays in few blocks. Taking the lowest serials first instead shreds holdings: on a
    simulated trading day each delivery moved 17 fragments on average."""
    return (b.start - b.end, b)


def take(blocks: Iterable[Block], quantity: int, *, presorted: bool = False) -> Split:
    """Take `quantity` units in `take_order`; a split block keeps its lower range (UNDP v2).

    `presorted`: the caller keeps its list in take order, so only its front is walked (a
    holding's list grows with every receipt; sorting it for every movement would be quadratic)."""
    moved: list[Block] = []
    removed: list[Block] = []
    kept: list[Block] = []
    remaining = quantity
    for b in blocks if presorted else sorted(blocks, key=take_order):
        if remaining == 0:
            break
        removed.append(b)
        if b.size <= remaining:
            moved.append(b)
            remaining -= b.size
        else:
            cut = b.end - remaining
            kept.append(Block(b.unit_class, b.origin, b.batch, b.start, cut))
            moved.append(Block(b.unit_class, b.origin, b.batch, cut + 1, b.end))
            remaining = 0
    if remaining:
        raise Conflict(
            "BLOCKS_INSUFFICIENT", "not enough transferable serial blocks", "可转让序列号不足"
        )
    return Split(moved, removed, kept)


def take_ranges(blocks: Iterable[Block], ranges: Sequence[Block]) -> Split:
    """Take exact serial ranges (a reversal moves the very units that went out)."""
    pool = sorted(blocks)
    moved: list[Block] = []
    removed: list[Block] = []
    kept: list[Block] = []
    for r in sorted(ranges):
        holder = next((b for b in pool if b.contains(r)), None)
        if holder is None:
            raise Conflict(
                "SERIALS_NOT_HELD",
                f"the account no longer holds serials {r.start}–{r.end}",
                "账户已不持有这些序列号",
            )
        pool.remove(holder)
        removed.append(holder)
        moved.append(r)
        pieces = []
        if holder.start < r.start:
            pieces.append(
                Block(holder.unit_class, holder.origin, holder.batch, holder.start, r.start - 1)
            )
        if r.end < holder.end:
            pieces.append(
                Block(holder.unit_class, holder.origin, holder.batch, r.end + 1, holder.end)
            )
        pool.extend(pieces)
        pool.sort()
        kept.extend(pieces)
    # a piece kept from one range may be consumed by the next: report only survivors
    survivors = [k for k in kept if k in pool]
    removed_orig = [b for b in removed if b not in kept]
    return Split(moved, removed_orig, survivors)


def subtract(blocks: Iterable[Block], excluded: Iterable[Block]) -> list[Block]:
    """The parts of `blocks` outside every `excluded` range (tainted or reserved serials)."""
    out: list[Block] = []
    cuts = sorted(excluded)
    for b in sorted(blocks):
        pieces = [b]
        for x in cuts:
            if not b.overlaps(x):
                continue
            nxt = []
            for p in pieces:
                if not p.overlaps(x):
                    nxt.append(p)
                    continue
                if p.start < x.start:
                    nxt.append(Block(p.unit_class, p.origin, p.batch, p.start, x.start - 1))
                if x.end < p.end:
                    nxt.append(Block(p.unit_class, p.origin, p.batch, x.end + 1, p.end))
            pieces = nxt
        out.extend(pieces)
    return out


def take_free(
    blocks: Sequence[Block],
    excluded: Sequence[Block],
    quantity: int,
    *,
    presorted: bool = False,
) -> Split:
    """Take `quantity` units in take order from the serials not excluded; split what is held.

    Within each free stretch the sender keeps the lower range, as `take` does.
    """
    held = blocks
    if not excluded:
        return take(held, quantity, presorted=presorted)
    chosen = take(subtract(held, excluded), quantity).moved
    return take_ranges(held, chosen)


def overlapping(blocks: Sequence[Block]) -> tuple[Block, Block] | None:
    """The first pair of blocks that share a serial, or None."""
    ordered = sorted(blocks)
    for a, b in pairwise(ordered):
        if a.overlaps(b):
            return a, b
    return None


# ---------------------------------------------------------------- operations as configuration


class Op(StrEnum):
    ISSUE = "ISSUE"
    ALLOCATE = "ALLOCATE"
    TRANSFER = "TRANSFER"
    SURRENDER = "SURRENDER"
    CANCEL = "CANCEL"
    COURT_TRANSFER = "COURT_TRANSFER"
    REVERSAL = "REVERSAL"
    TRADE_DELIVERY = "TRADE_DELIVERY"
    CLAWBACK = "CLAWBACK"


@dataclass(frozen=True)
class Operation:
    code: Op
    name_en: str
    name_zh: str
    from_types: frozenset[AccountType]
    to_types: frozenset[AccountType]
    unit_kinds: frozenset[UnitKind]
    initiators: frozenset[str]  # roles; holders act only on their own accounts
    needs_approval: bool = False  # maker–checker: another operator approves
    trusted_list_applies: bool = False  # delay and per-transfer limit outside the trusted list
    passes_market_suspend: bool = False
    reversal_window_days: int | None = None
    sender_statuses: frozenset[AccountStatus] = field(
        default_factory=lambda: frozenset({AccountStatus.OPEN})
    )
    receiver_statuses: frozenset[AccountStatus] = field(
        default_factory=lambda: frozenset({AccountStatus.OPEN})
    )
    consumes_hold: str | None = None  # the hold kind this operation may take its units from


ALL_KINDS = frozenset(UnitKind)
# Holders act on their own accounts; an operator moving a holder's units does so by court order
# (COURT_TRANSFER, maker–checker), never as a plain transfer.
HOLDER_ROLES = frozenset({"enterprise", "member", "lender"})
_OPEN_OR_RESTRICTED = frozenset({AccountStatus.OPEN, AccountStatus.RESTRICTED})

OPERATIONS: dict[Op, Operation] = {
    o.code: o
    for o in [
        Operation(
            Op.ISSUE,
            "Issuance",
            "配额/减排量签发",
            frozenset(),
            frozenset({AccountType.ISSUANCE}),
            ALL_KINDS,
            frozenset({"operator"}),
            needs_approval=True,
            passes_market_suspend=True,
        ),
        Operation(
            Op.ALLOCATE,
            "Allocation",
            "配额分配",
            frozenset({AccountType.ISSUANCE}),
            HOLDER_TYPES,
            ALL_KINDS,
            frozenset({"operator"}),
            needs_approval=True,
            passes_market_suspend=True,
            reversal_window_days=30,
            receiver_statuses=_OPEN_OR_RESTRICTED,
        ),
        Operation(
            Op.TRANSFER,
            "Transfer",
            "转让",
            HOLDER_TYPES,
            HOLDER_TYPES,
            ALL_KINDS,
            HOLDER_ROLES,
            trusted_list_applies=True,
        ),
        Operation(
            Op.SURRENDER,
            "Surrender",
            "清缴",
            frozenset({AccountType.HOLDING, AccountType.TRADING}),
            frozenset({AccountType.SURRENDER}),
            ALL_KINDS,
            HOLDER_ROLES,
            passes_market_suspend=True,
            reversal_window_days=14,
            sender_statuses=_OPEN_OR_RESTRICTED,
        ),
        Operation(
            Op.CANCEL,
            "Voluntary cancellation",
            "自愿注销",
            HOLDER_TYPES,
            frozenset({AccountType.CANCELLATION}),
            ALL_KINDS,
            HOLDER_ROLES,
            reversal_window_days=14,
        ),
        Operation(
            Op.COURT_TRANSFER,
            "Court-ordered transfer",
            "司法扣划",
            HOLDER_TYPES,
            HOLDER_TYPES,
            ALL_KINDS,
            frozenset({"operator"}),
            needs_approval=True,
            passes_market_suspend=True,
            sender_statuses=frozenset(
                {AccountStatus.OPEN, AccountStatus.RESTRICTED, AccountStatus.SUSPENDED}
            ),
            consumes_hold="JUDICIAL_FREEZE",
        ),
        Operation(
            Op.TRADE_DELIVERY,
            "Exchange delivery (DvP settlement)",
            "交易交收",
            HOLDER_TYPES,
            HOLDER_TYPES,
            ALL_KINDS,
            frozenset({"operator"}),  # only the settlement run, as the system, starts it
            consumes_hold="EXCHANGE_RESERVATION",
        ),
        Operation(
            Op.CLAWBACK,
            "Allocation claw-back",
            "配额收回",
            frozenset({AccountType.HOLDING, AccountType.TRADING}),
            frozenset({AccountType.ISSUANCE}),
            frozenset({UnitKind.CEA}),
            frozenset({"operator"}),
            needs_approval=True,
            passes_market_suspend=True,
            sender_statuses=frozenset(
                {AccountStatus.OPEN, AccountStatus.RESTRICTED, AccountStatus.SUSPENDED}
            ),
        ),
        Operation(
            Op.REVERSAL,
            "Reversal",
            "冲正",
            HOLDER_TYPES | SYSTEM_TYPES,
            HOLDER_TYPES | SYSTEM_TYPES,
            ALL_KINDS,
            frozenset({"operator"}),
            needs_approval=True,
            passes_market_suspend=True,
            sender_statuses=frozenset(
                {AccountStatus.OPEN, AccountStatus.RESTRICTED, AccountStatus.SUSPENDED}
            ),
            receiver_statuses=_OPEN_OR_RESTRICTED,
        ),
    ]
}


class HoldKind(StrEnum):
    PLEDGE = "PLEDGE"  # 质押, lien holder named
    JUDICIAL_FREEZE = "JUDICIAL_FREEZE"  # 司法冻结, operator on a court order
    EXCHANGE_RESERVATION = "EXCHANGE_RESERVATION"  # units reserved for a sell order


HOLD_PLACERS: dict[HoldKind, frozenset[str]] = {
    HoldKind.PLEDGE: frozenset({"enterprise", "member", "lender", "operator"}),
    HoldKind.JUDICIAL_FREEZE: frozenset({"operator"}),
    HoldKind.EXCHANGE_RESERVATION: frozenset({"operator", "member", "enterprise"}),
}


def operation(code: object) -> Operation:
    try:
        return OPERATIONS[Op(str(code))]
    except ValueError:
        raise InvalidInput(
            "OPERATION_UNKNOWN", f"unknown operation {code!r}", "未知业务类型"
        ) from None


@dataclass(frozen=True)
class AccountView:
    id: str
    type: AccountType
    status: AccountStatus
    entity_id: str


def check_route(
    op: Operation, sender: AccountView | None, receiver: AccountView, kind: UnitKind
) -> None:
    """UK ETS business checks: account types, statuses and unit kinds the operation allows."""
    if kind not in op.unit_kinds:
        raise InvalidInput(
            "UNIT_KIND_NOT_ALLOWED",
            f"{op.code.value} does not move {kind.value}",
            "该业务不适用此单位类别",
        )
    if sender is not None:
        if sender.type not in op.from_types:
            raise InvalidInput(
                "SENDER_TYPE_NOT_ALLOWED",
                f"{op.code.value} cannot start from a {sender.type.value} account",
                "转出账户类型不允许",
            )
        if sender.status not in op.sender_statuses:
            raise Conflict(
                "SENDER_STATUS",
                f"account {sender.id} is {sender.status.value}",
                f"转出账户状态为 {sender.status.value}",
            )
        if sender.id == receiver.id:
            raise InvalidInput(
                "SAME_ACCOUNT", "sender and receiver are the same account", "转出与转入账户相同"
            )
    if receiver.type not in op.to_types:
        raise InvalidInput(
            "RECEIVER_TYPE_NOT_ALLOWED",
            f"{op.code.value} cannot go to a {receiver.type.value} account",
            "转入账户类型不允许",
        )
    if receiver.status not in op.receiver_statuses:
        raise Conflict(
            "RECEIVER_STATUS",
            f"account {receiver.id} is {receiver.status.value}",
            f"转入账户状态为 {receiver.status.value}",
        )


def check_initiator(
    op: Operation, role: str, actor_entity: str | None, sender: AccountView | None
) -> None:
    if role not in op.initiators:
        raise Forbidden(
            "INITIATOR_NOT_ALLOWED", f"role {role} may not start {op.code.value}", "无权发起该业务"
        )
    if role != "operator" and (sender is None or sender.entity_id != actor_entity):
        raise Forbidden(
            "NOT_ACCOUNT_HOLDER", "you may act only on your own accounts", "只能操作本主体账户"
        )


@dataclass(frozen=True)
class Balance:
    posted: int = 0
    pending: int = 0
    held: int = 0

    @property
    def available(self) -> int:
        return self.posted - self.pending - self.held


def check_available(balance: Balance, quantity: int, *, extra_t: int = 0) -> None:
    if quantity > balance.available + extra_t:
        raise Conflict(
            "INSUFFICIENT_AVAILABLE",
            f"{quantity} t requested but {balance.available + extra_t} t available",
            f"申请 {quantity} 吨，可用仅 {balance.available + extra_t} 吨",
        )


def check_untrusted(limit_t: int, quantity: int) -> None:
    if quantity > limit_t:
        raise Conflict(
            "UNTRUSTED_LIMIT_EXCEEDED",
            f"transfers to accounts outside the trusted list are limited to {limit_t} t",
            f"向非信任账户转让单笔上限 {limit_t} 吨",
        )


def market_suspended_error(op: Operation) -> DomainError:
    return Conflict(
        "MARKET_SUSPENDED",
        f"the market is suspended: {op.code.value} is not allowed",
        "市场已暂停，该业务不可办理",
    )


# ---------------------------------------------------------------- a batch of transfers in memory


@dataclass
class Book:
    """What a batch of transfers reads, loaded once; the model decides each command against it
    and updates it, so later commands in the batch see earlier ones."""

    accounts: dict[str, AccountView]
    balances: dict[tuple[str, str], Balance]
    blocks: dict[tuple[str, str], list[Block]]
    excluded: dict[tuple[str, str], list[Block]]  # tainted or reserved for pending reversals
    reserved_by_reversals: dict[tuple[str, str], int]
    trusted: set[tuple[str, str]]
    unit_classes: set[str]
    market_suspended: bool


@dataclass(frozen=True)
class TransferDecision:
    moved: list[Block]  # empty while the transfer waits out its delay
    delayed: bool


def _check_free(book: Book, key: tuple[str, str], bal: Balance, quantity: int) -> None:
    """Enough of the sender's serials are neither tainted nor reserved for a pending reversal."""
    excluded = book.excluded.get(key, [])
    if excluded:
        free = sum(b.size for b in subtract(book.blocks.get(key, []), excluded))
    else:
        free = bal.posted
    if free - (bal.pending - book.reserved_by_reversals.get(key, 0)) < quantity:
        raise Conflict(
            "UNITS_TAINTED",
            "some of these units carry a tainted-serial flag or are reserved",
            "部分单位序列号被标记为可疑或已被预留",
        )


def _move_blocks(
    book: Book, key: tuple[str, str], to_key: tuple[str, str], quantity: int, *, from_held: int
) -> list[Block]:
    """Moves `quantity` from `key` to `to_key` in the book (balances and blocks, both kept in
    take order); `from_held` of it was held (an exchange reservation being delivered)."""
    held = book.blocks.get(key, [])
    excluded = book.excluded.get(key, [])
    split = take_free(held, excluded, quantity, presorted=True)
    if excluded:
        book.blocks[key] = sorted(
            (set(held) - set(split.removed)) | set(split.kept), key=take_order
        )
    else:  # `take` consumed a prefix of the blocks in take order: keep the rest in order
        del held[: len(split.removed)]
        for b in split.kept:
            bisect.insort(held, b, key=take_order)
        book.blocks[key] = held
    bal = book.balances.get(key, Balance())
    book.balances[key] = Balance(bal.posted - quantity, bal.pending, bal.held - from_held)
    got = book.balances.get(to_key, Balance())
    book.balances[to_key] = Balance(got.posted + quantity, got.pending, got.held)
    received = book.blocks.setdefault(to_key, [])
    for b in split.moved:
        bisect.insort(received, b, key=take_order)
    return split.moved


def _require_accounts(book: Book, *ids: str) -> None:
    for i in ids:
        if i not in book.accounts:
            raise NotFound("ACCOUNT_NOT_FOUND", f"no account {i}", f"账户 {i} 不存在")


def _check_movement(
    book: Book,
    op: Operation,
    role: str,
    actor_entity: str | None,
    from_id: str,
    to_id: str,
    unit_class: str,
    quantity: int,
) -> tuple[tuple[str, str], Balance]:
    """What every movement out of an account is checked for, against the in-memory book (the
    checks `RegistryService._propose` makes); changes nothing. The sender's key and balance."""
    uc = parse_unit_class(unit_class)
    if book.market_suspended and not op.passes_market_suspend:
        raise market_suspended_error(op)
    _require_accounts(book, to_id, from_id)
    sender = book.accounts[from_id]
    check_initiator(op, role, actor_entity, sender)
    check_route(op, sender, book.accounts[to_id], uc.kind)
    if uc.code not in book.unit_classes:
        raise NotFound(
            "UNIT_CLASS_NOT_FOUND",
            f"no units of class {uc.code} were ever issued",
            "该单位类别不存在",
        )
    key = (from_id, uc.code)
    bal = book.balances.get(key, Balance())
    check_available(bal, quantity)
    _check_free(book, key, bal, quantity)
    return key, bal


def decide_transfer(
    book: Book,
    role: str,
    actor_entity: str | None,
    from_id: str,
    to_id: str,
    unit_class: str,
    quantity: int,
    *,
    untrusted_limit_t: int,
    untrusted_delay: bool,
) -> TransferDecision:
    """The same checks `RegistryService` runs for one TRANSFER, against the in-memory book.

    Checks everything before changing anything, so a refused command leaves the book as it was.
    """
    op = OPERATIONS[Op.TRANSFER]
    key, bal = _check_movement(book, op, role, actor_entity, from_id, to_id, unit_class, quantity)
    sender, receiver = book.accounts[from_id], book.accounts[to_id]
    trusted = sender.entity_id == receiver.entity_id or (from_id, to_id) in book.trusted
    if op.trusted_list_applies and not trusted:
        check_untrusted(untrusted_limit_t, quantity)
        if untrusted_delay:
            book.balances[key] = Balance(bal.posted, bal.pending + quantity, bal.held)
            return TransferDecision([], True)
    return TransferDecision(_move_blocks(book, key, (to_id, key[1]), quantity, from_held=0), False)


def decide_proposal(
    book: Book,
    op: Operation,
    role: str,
    actor_entity: str | None,
    from_id: str,
    to_id: str,
    unit_class: str,
    quantity: int,
) -> None:
    """A proposal awaiting the checker (`needs_approval`, no hold, no trusted list): checked
    against the in-memory book, it reserves `quantity` on the sender as pending. Checks
    everything before changing anything."""
    if not op.needs_approval or op.trusted_list_applies or op.consumes_hold is not None:
        raise ValueError(f"{op.code.value} is not a plain proposal")
    key, bal = _check_movement(book, op, role, actor_entity, from_id, to_id, unit_class, quantity)
    book.balances[key] = Balance(bal.posted, bal.pending + quantity, bal.held)


def check_posting(op: Operation, receiver: AccountView, sender: AccountView | None) -> None:
    """When the units of a proposal or a delayed transfer move, both accounts must still be in
    a state the operation allows."""
    for role, account, allowed in (
        ("RECEIVER", receiver, op.receiver_statuses),
        ("SENDER", sender, op.sender_statuses),
    ):
        if account is not None and account.status not in allowed:
            raise Conflict(
                f"{role}_STATUS",
                f"account {account.id} is {account.status.value}",
                f"账户 {account.id} 状态为 {account.status.value}",
            )


def decide_posting(
    book: Book, op: Operation, from_id: str, to_id: str, unit_class: str, quantity: int
) -> list[Block]:
    """An approved transfer's posting: the `quantity` its proposal reserved as pending on the
    sender leaves with its serials, if both accounts are still in a state the operation allows.
    Checks everything before changing anything."""
    _require_accounts(book, to_id, from_id)
    check_posting(op, book.accounts[to_id], book.accounts[from_id])
    key = (from_id, unit_class)
    moved = _move_blocks(book, key, (to_id, unit_class), quantity, from_held=0)
    bal = book.balances[key]
    book.balances[key] = Balance(bal.posted, bal.pending - quantity, bal.held)
    return moved


def decide_delivery(
    book: Book, from_id: str, to_id: str, unit_class: str, quantity: int
) -> list[Block]:
    """A trade's units leg (TRADE_DELIVERY) against the in-memory book: `quantity` of the
    sender's held units (its exchange reservation) move to the receiver at once. The caller
    checked the hold itself. Checks everything before changing anything."""
    op = OPERATIONS[Op.TRADE_DELIVERY]
    uc = parse_unit_class(unit_class)
    if book.market_suspended:
        raise market_suspended_error(op)
    _require_accounts(book, to_id, from_id)
    check_route(op, book.accounts[from_id], book.accounts[to_id], uc.kind)
    key = (from_id, uc.code)
    bal = book.balances.get(key, Balance())
    if bal.held < quantity:
        raise Conflict("HOLD_TOO_SMALL", f"only {bal.held} t are held", f"冻结数量仅 {bal.held} 吨")
    check_available(bal, quantity, extra_t=quantity)
    _check_free(book, key, bal, quantity)
    return _move_blocks(book, key, (to_id, uc.code), quantity, from_held=quantity)


# ---------------------------------------------------------------- replay (invariant 6)


@dataclass
class Ledger:
    """State rebuilt from journal entries alone, to compare with what is stored."""

    balances: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    blocks: dict[str, set[Block]] = field(default_factory=dict)  # account → blocks

    def _bal(self, account: str, unit_class: str) -> list[int]:
        return self.balances.setdefault((account, unit_class), [0, 0, 0])

    def apply(self, type_: str, p: dict[str, object]) -> None:
        if type_ == "registry.transfer_proposed":
            if p["from"]:
                bal = self._bal(str(p["from"]), str(p["unit_class"]))
                bal[1] += int(str(p["quantity"]))
                bal[2] -= int(str(p.get("consumed_hold_t") or 0))
        elif type_ in ("registry.transfer_voided", "registry.transfer_expired"):
            if p["from"]:
                bal = self._bal(str(p["from"]), str(p["unit_class"]))
                bal[1] -= int(str(p["quantity"]))
                bal[2] += int(str(p.get("restored_hold_t") or 0))
        elif type_ == "registry.transfer_completed":
            uc, q = str(p["unit_class"]), int(str(p["quantity"]))
            moved = [Block(uc, str(o), int(b), int(s), int(e)) for o, b, s, e in p["blocks"]]  # type: ignore[attr-defined]
            if p["from"]:
                sender = str(p["from"])
                bal = self._bal(sender, uc)
                bal[0] -= q
                if not p.get("direct"):  # a direct transfer never went through pending
                    bal[1] -= q
                else:  # a direct delivery takes its units out of a hold
                    bal[2] -= int(str(p.get("consumed_hold_t") or 0))
                held = self.blocks.setdefault(sender, set())
                split = take_ranges(held, moved)
                held.difference_update(split.removed)
                held.update(split.kept)
            self._bal(str(p["to"]), uc)[0] += q
            self.blocks.setdefault(str(p["to"]), set()).update(moved)
        elif type_ == "registry.hold_placed":
            self._bal(str(p["account"]), str(p["unit_class"]))[2] += int(str(p["quantity"]))
        elif type_ == "registry.hold_released":
            self._bal(str(p["account"]), str(p["unit_class"]))[2] -= int(str(p["quantity"]))
