"""Pure registry rules (carbonhub.registry.model): no database, no clock.

Check digits, unit classes, serials, block splitting, the account status machine, route and
initiator checks, balances — plus hypothesis properties of `take` and `take_ranges`.
"""

from __future__ import annotations

import random
import string
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carbonhub.core.errors import Conflict, DomainError, Forbidden, InvalidInput
from carbonhub.registry import model as m
from carbonhub.registry.model import (
    AccountStatus,
    AccountType,
    AccountView,
    Balance,
    Block,
    Op,
    UnitKind,
)

CEA = "CEA-2023"


def blk(start: int, end: int, *, uc: str = CEA, origin: str = "420000", batch: int = 1) -> Block:
    return Block(uc, origin, batch, start, end)


def serials(blocks: list[Block]) -> list[tuple[str, str, int, int]]:
    """Every unit of the blocks as (class, origin, batch, serial number), duplicates kept."""
    return [(b.unit_class, b.origin, b.batch, n) for b in blocks for n in range(b.start, b.end + 1)]


@contextmanager
def raises_code(exc_type: type[DomainError], code: str) -> Iterator[None]:
    with pytest.raises(exc_type) as info:
        yield
    assert info.value.code == code, (info.value.code, code)


# ---------------------------------------------------------------- account ids (ISO 7064 mod 97-10)

VALID_ID = "CN-200-0000001-45"  # C=12 N=23: 98 − (1223200000000100 mod 97) = 98 − 53 = 45


def test_known_account_id_and_mod97_property() -> None:
    assert m.make_account_id("CN", AccountType.HOLDING, 1) == VALID_ID
    assert m.parse_account_id(VALID_ID) == VALID_ID
    # independent arithmetic: the whole number including the check digits is 1 mod 97
    assert int("12232000000001" + "45") % 97 == 1
    assert m.check_digits("CN-200-0000001") == "45"


@pytest.mark.parametrize("type_", list(AccountType))
@pytest.mark.parametrize("seq", [1, 7, 42, 999, 1234567, 9999999])
def test_made_account_ids_parse(type_: AccountType, seq: int) -> None:
    acc = m.make_account_id("CN", type_, seq)
    assert m.parse_account_id(acc) == acc
    assert acc.split("-")[1] == m.TYPE_CODES[type_]


def _single_char_typos(text: str) -> list[str]:
    out = []
    for i, ch in enumerate(text):
        alphabet = string.digits if ch.isdigit() else string.ascii_uppercase if ch.isalpha() else ""
        out.extend(text[:i] + other + text[i + 1 :] for other in alphabet if other != ch)
    return out


def test_every_single_character_typo_in_an_account_id_is_caught() -> None:
    typos = _single_char_typos(VALID_ID)
    assert len(typos) == 9 * 12 + 25 * 2  # 12 digits, 2 letters
    codes = set()
    for typo in typos:
        with pytest.raises(InvalidInput) as info:
            m.parse_account_id(typo)
        codes.add(info.value.code)
    assert codes == {"ACCOUNT_ID_CHECK_DIGITS", "ACCOUNT_ID_MALFORMED"}


def test_check_digit_typos_name_the_check_digits() -> None:
    # a typo in the running number keeps the form, so only the check digits can catch it
    for typo in [
        "CN-200-0000002-45",
        "CN-200-0000001-46",
        "CN-200-1000001-45",
        "CN-210-0000001-45",
    ]:
        with raises_code(InvalidInput, "ACCOUNT_ID_CHECK_DIGITS"):
            m.parse_account_id(typo)


def test_adjacent_transpositions_are_caught() -> None:
    acc = m.make_account_id("CN", AccountType.TRADING, 1234567)
    for i in range(len(acc) - 1):
        a, b = acc[i], acc[i + 1]
        if a == b or not (a.isdigit() and b.isdigit()):
            continue
        swapped = acc[:i] + b + a + acc[i + 2 :]
        with pytest.raises(InvalidInput):
            m.parse_account_id(swapped)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "CN",
        "CN-200-0000001",
        "CN-200-000001-45",
        "CN-200-00000001-45",
        "cn-200-0000001-45",
        "CN-999-0000001-45",
        "CN-200-0000001-4",
        "CN-200-0000001-451",
        "CN_200_0000001_45",
        " CN-200-0000001-45",
        "CNX-200-0000001-45",
        "C1-200-0000001-45",
        None,
        2000000001,
        b"CN",
    ],
)
def test_malformed_account_ids(text: object) -> None:
    with raises_code(InvalidInput, "ACCOUNT_ID_MALFORMED"):
        m.parse_account_id(text)


def test_account_id_with_trailing_newline_is_malformed() -> None:
    with pytest.raises(InvalidInput):
        m.parse_account_id(VALID_ID + "\n")


# ---------------------------------------------------------------- unit classes


@pytest.mark.parametrize(
    ("text", "kind", "period", "project"),
    [
        ("CEA-2023", UnitKind.CEA, 2023, ""),
        ("CEA-2000", UnitKind.CEA, 2000, ""),
        ("CEA-2100", UnitKind.CEA, 2100, ""),
        ("CCER-2021-P0001", UnitKind.CCER, 2021, "P0001"),
        ("PHCER-2025-METRO", UnitKind.PHCER, 2025, "METRO"),
    ],
)
def test_unit_class_parses(text: str, kind: UnitKind, period: int, project: str) -> None:
    uc = m.parse_unit_class(text)
    assert (uc.kind, uc.period, uc.project) == (kind, period, project)
    assert uc.code == text


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("CEA-2023-P1", "UNIT_CLASS_MALFORMED"),  # CEA has no project
        ("CCER-2021", "UNIT_CLASS_MALFORMED"),  # credits need one
        ("PHCER-2021", "UNIT_CLASS_MALFORMED"),
        ("cea-2023", "UNIT_CLASS_MALFORMED"),
        ("EUA-2023", "UNIT_CLASS_MALFORMED"),
        ("CEA-23", "UNIT_CLASS_MALFORMED"),
        ("CEA2023", "UNIT_CLASS_MALFORMED"),
        ("CCER-2021-p0001", "UNIT_CLASS_MALFORMED"),
        ("CCER-2021-" + "P" * 21, "UNIT_CLASS_MALFORMED"),
        ("", "UNIT_CLASS_MALFORMED"),
        (None, "UNIT_CLASS_MALFORMED"),
        (2023, "UNIT_CLASS_MALFORMED"),
        ("CEA-1999", "UNIT_CLASS_PERIOD"),
        ("CEA-2101", "UNIT_CLASS_PERIOD"),
    ],
)
def test_unit_class_rejects(text: object, code: str) -> None:
    with raises_code(InvalidInput, code):
        m.parse_unit_class(text)


# ---------------------------------------------------------------- serials


def test_serial_format_known_value_and_round_trip() -> None:
    b = blk(1, 100)
    s = b.serial("CN")
    assert s == "CN-CEA-2023-420000-1-1-100-94"
    assert int(m._numeric(s[:-3]) + "94") % 97 == 1
    assert m.parse_serial(s, "CN") == b


def test_credit_serial_round_trip() -> None:
    b = Block("CCER-2021-P0001", "P0001", 2, 5, 9)
    s = b.serial("CN")
    assert s.startswith("CN-CCER-2021-P0001-2-5-9-")
    assert m.parse_serial(s, "CN") == b


def test_serial_is_case_and_space_tolerant() -> None:
    s = blk(3, 30, batch=4).serial("CN")
    assert m.parse_serial(f"  {s.lower()} ", "CN") == blk(3, 30, batch=4)


def test_short_one_unit_form() -> None:
    assert m.parse_serial("CN-CEA-2023-420000-1-57", "CN") == blk(57, 57)
    b = m.parse_serial("CN-CCER-2021-P0001-3-9", "CN")
    assert b == Block("CCER-2021-P0001", "P0001", 3, 9, 9)
    assert b.size == 1


def test_every_single_digit_typo_in_a_serial_is_caught() -> None:
    s = blk(123, 4567, batch=12).serial("CN")
    typos = [t for t in _single_char_typos(s) if t != s]
    assert len(typos) > 100
    for typo in typos:
        try:
            parsed = m.parse_serial(typo, "CN")
        except InvalidInput:
            continue
        pytest.fail(f"typo {typo} parsed as {parsed}")


def test_wrong_check_digits_and_reversed_range() -> None:
    with raises_code(InvalidInput, "SERIAL_CHECK_DIGITS"):
        m.parse_serial("CN-CEA-2023-420000-1-1-100-95", "CN")
    body = "CN-CEA-2023-420000-1-100-1"
    with raises_code(InvalidInput, "SERIAL_RANGE"):
        m.parse_serial(f"{body}-{m.check_digits(body)}", "CN")


def test_serial_of_another_registry() -> None:
    s = blk(1, 5).serial("GB")
    assert m.parse_serial(s, "GB") == blk(1, 5)
    with raises_code(InvalidInput, "SERIAL_REGISTRY"):
        m.parse_serial(s, "CN")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "CN",
        "CN-CEA-2023",
        "CN-CEA-2023-420000",
        "CN-CEA-2023-420000-1",
        "CN-CEA-2023-420000-1-1-100",
        "CN-CEA-2023-420000-0-1-100-94",
        "CN-CEA-2023-420000-1-0",
        "CN-EUA-2023-420000-1-1-100-94",
        "CN-CEA-23-420000-1-1-100-94",
        "CN-CEA-2023-420000-1-1-100-9",
        "CN-CEA-2023-42-0000-1-1-100-94",
        "CN-CEA-2023-420000-1-1-100-94-1",
        "CN-CEA-2023-420000-1-1-1e3-94",
        None,
        57,
    ],
)
def test_malformed_serials(text: object) -> None:
    with raises_code(InvalidInput, "SERIAL_MALFORMED"):
        m.parse_serial(text, "CN")


def test_serial_with_bad_period_or_class() -> None:
    with raises_code(InvalidInput, "UNIT_CLASS_PERIOD"):
        m.parse_serial("CN-CEA-1999-420000-1-7", "CN")


origins = st.sampled_from(["420000", "110000", "P0001", "METRO"])


@st.composite
def any_block(draw: st.DrawFn) -> Block:
    kind = draw(st.sampled_from(list(UnitKind)))
    period = draw(st.integers(2000, 2100))
    origin = draw(origins)
    start = draw(st.integers(1, 10**12))
    end = draw(st.integers(start, min(start + 10**6, 10**13 - 1)))
    return Block(
        m.class_for(kind.value, period, origin), origin, draw(st.integers(1, 999_999)), start, end
    )


@given(any_block())
@settings(max_examples=200)
def test_serial_round_trip_property(b: Block) -> None:
    s = b.serial("CN")
    assert m.parse_serial(s, "CN") == b
    if b.size == 1:
        assert m.parse_serial(s.rsplit("-", 2)[0], "CN") == b


# ---------------------------------------------------------------- Block


def test_block_contains_and_overlaps() -> None:
    a = blk(1, 100)
    assert a.size == 100
    assert a.contains(blk(1, 100)) and a.contains(blk(40, 60)) and not a.contains(blk(90, 101))
    assert a.overlaps(blk(100, 200)) and not a.overlaps(blk(101, 200))
    assert not a.overlaps(blk(1, 100, batch=2)) and not a.overlaps(blk(1, 100, origin="110000"))
    assert not a.contains(blk(1, 5, uc="CEA-2024"))
    # Block is a plain value; ranges are validated where they enter: serial parsing (below)
    # and the database's CHECK (start >= 1 AND start <= end).


def test_overlapping_finds_the_first_pair() -> None:
    assert m.overlapping([blk(1, 10), blk(11, 20), blk(1, 10, batch=2)]) is None
    assert m.overlapping([blk(11, 20), blk(5, 11)]) == (blk(5, 11), blk(11, 20))


# ---------------------------------------------------------------- take


def test_take_largest_block_first_and_sender_keeps_lower_range() -> None:
    small, large = blk(1, 10), blk(11, 30)
    split = m.take([small, large], 15)
    assert split.moved == [blk(16, 30)]  # one block split, the small one untouched
    assert split.kept == [blk(11, 15)]
    assert split.removed == [large]
    both = m.take([small, large], 25)
    assert both.moved == [large, blk(6, 10)] and both.kept == [blk(1, 5)]


def test_take_breaks_size_ties_by_origin_then_batch_then_start() -> None:
    blocks = [blk(1, 3, batch=2), blk(58, 60, batch=1), blk(1, 3, origin="110000", batch=9)]
    split = m.take(blocks, 4)
    # all of size 3: "110000" < "420000", so the other province's block goes first, then batch 1
    assert split.moved == [blk(1, 3, origin="110000", batch=9), blk(60, 60, batch=1)]
    assert split.kept == [blk(58, 59, batch=1)]


def test_take_order_keeps_holdings_in_few_blocks() -> None:
    """Fifty holders trading at random: every movement splits at most one block."""
    rng = random.Random(7)
    holdings = {i: [blk(i * 1_000_000 + 1, (i + 1) * 1_000_000)] for i in range(50)}
    moved = 0
    for _ in range(5_000):
        seller, buyer = rng.sample(range(50), 2)
        split = m.take(holdings[seller], rng.randint(1, 100))
        holdings[seller] = sorted(
            (set(holdings[seller]) - set(split.removed)) | set(split.kept), key=m.take_order
        )
        holdings[buyer] = sorted(holdings[buyer] + split.moved, key=m.take_order)
        moved += len(split.moved)
    assert moved == 5_000


def test_take_exact_amounts() -> None:
    blocks = [blk(1, 10), blk(21, 30)]
    one = m.take(blocks, 10)
    assert (one.moved, one.removed, one.kept) == ([blk(1, 10)], [blk(1, 10)], [])
    both = m.take(blocks, 20)
    assert (both.moved, both.kept) == (blocks, [])
    none = m.take(blocks, 0)
    assert (none.moved, none.removed, none.kept) == ([], [], [])
    single = m.take([blk(7, 7)], 1)
    assert single.moved == [blk(7, 7)] and single.kept == []


def test_take_insufficient() -> None:
    with raises_code(Conflict, "BLOCKS_INSUFFICIENT"):
        m.take([blk(1, 10), blk(21, 30)], 21)
    with raises_code(Conflict, "BLOCKS_INSUFFICIENT"):
        m.take([], 1)


@st.composite
def block_sets(draw: st.DrawFn) -> list[Block]:
    """Non-overlapping blocks in up to three (origin, batch) series, in random order."""
    out: list[Block] = []
    for origin, batch in draw(
        st.lists(
            st.tuples(st.sampled_from(["110000", "420000"]), st.integers(1, 3)),
            min_size=0,
            max_size=3,
            unique=True,
        )
    ):
        pos = draw(st.integers(1, 50))
        for size, gap in draw(
            st.lists(st.tuples(st.integers(1, 40), st.integers(0, 5)), max_size=5)
        ):
            out.append(Block(CEA, origin, batch, pos, pos + size - 1))
            pos += size + gap
    return draw(st.permutations(out))


@given(block_sets(), st.data())
@settings(max_examples=250)
def test_take_conserves_units(blocks: list[Block], data: st.DataObject) -> None:
    total = sum(b.size for b in blocks)
    quantity = data.draw(st.integers(0, total + 3), label="quantity")
    if quantity > total:
        with raises_code(Conflict, "BLOCKS_INSUFFICIENT"):
            m.take(blocks, quantity)
        return
    split = m.take(blocks, quantity)
    moved, kept = serials(split.moved), serials(split.kept)
    assert sum(b.size for b in split.moved) == quantity == len(moved)
    assert len(set(moved)) == len(moved) and len(set(kept)) == len(kept)
    assert not set(moved) & set(kept)
    assert sorted(moved + kept) == sorted(serials(split.removed))
    untouched = [b for b in blocks if b not in split.removed]
    assert len(untouched) == len(blocks) - len(split.removed)
    after = serials(untouched) + kept
    assert sorted(after + moved) == sorted(serials(blocks))
    assert sum(b.size for b in untouched) + sum(b.size for b in split.kept) == total - quantity
    # take order: everything taken comes before everything left whole
    if split.removed and untouched:
        assert max(map(m.take_order, split.removed)) < min(map(m.take_order, untouched))
    # at most one split, and the sender keeps its lower range
    assert len(split.kept) <= 1
    for k in split.kept:
        upper = [
            b
            for b in split.moved
            if (b.unit_class, b.origin, b.batch, b.start)
            == (k.unit_class, k.origin, k.batch, k.end + 1)
        ]
        assert len(upper) == 1


# ---------------------------------------------------------------- take_ranges


def test_take_ranges_from_the_middle_keeps_two_pieces() -> None:
    whole = blk(1, 100)
    split = m.take_ranges([whole, blk(1, 10, batch=2)], [blk(40, 60)])
    assert split.moved == [blk(40, 60)]
    assert split.removed == [whole]
    assert sorted(split.kept) == [blk(1, 39), blk(61, 100)]


def test_take_ranges_several_ranges_in_one_block() -> None:
    whole = blk(1, 100)
    split = m.take_ranges([whole], [blk(50, 60), blk(10, 20), blk(95, 100)])
    assert sorted(split.moved) == [blk(10, 20), blk(50, 60), blk(95, 100)]
    assert split.removed == [whole]  # intermediate pieces are not reported as removed
    assert sorted(split.kept) == [blk(1, 9), blk(21, 49), blk(61, 94)]


def test_take_ranges_across_blocks_and_exact_blocks() -> None:
    a, b, c = blk(1, 10), blk(11, 20), blk(1, 10, batch=2)
    split = m.take_ranges([a, b, c], [blk(11, 20), blk(1, 5, batch=2)])
    assert sorted(split.removed) == [b, c]
    assert split.kept == [blk(6, 10, batch=2)]
    assert sorted(split.moved) == [blk(11, 20), blk(1, 5, batch=2)]


@pytest.mark.parametrize(
    "ranges",
    [
        [blk(5, 15)],  # straddles two rows
        [blk(101, 101)],
        [blk(1, 5, batch=2)],
        [blk(1, 5, uc="CEA-2024")],
        [blk(1, 5), blk(3, 4)],  # the same serials twice
    ],
)
def test_take_ranges_not_held(ranges: list[Block]) -> None:
    with raises_code(Conflict, "SERIALS_NOT_HELD"):
        m.take_ranges([blk(1, 10), blk(11, 100)], ranges)


@given(block_sets(), st.data())
@settings(max_examples=200)
def test_take_ranges_conserves_units(blocks: list[Block], data: st.DataObject) -> None:
    ranges: list[Block] = []
    for b in blocks:
        if data.draw(st.booleans()):
            s = data.draw(st.integers(b.start, b.end))
            e = data.draw(st.integers(s, b.end))
            ranges.append(b._replace(start=s, end=e))
            if e < b.end and data.draw(st.booleans()):
                s2 = data.draw(st.integers(e + 1, b.end))
                ranges.append(b._replace(start=s2, end=data.draw(st.integers(s2, b.end))))
    split = m.take_ranges(blocks, data.draw(st.permutations(ranges)))
    assert sorted(split.moved) == sorted(ranges)
    untouched = [b for b in blocks if b not in split.removed]
    assert all(b in blocks for b in split.removed)
    moved, kept = serials(split.moved), serials(split.kept)
    assert not set(moved) & set(kept)
    assert sorted(moved + kept) == sorted(serials(split.removed))
    assert sorted(moved + kept + serials(untouched)) == sorted(serials(blocks))


# ---------------------------------------------------------------- status machine


ALL_STATUSES = list(AccountStatus)


@pytest.mark.parametrize("target", ALL_STATUSES)
def test_closed_never_reopens(target: AccountStatus) -> None:
    with raises_code(Conflict, "STATUS_TRANSITION_NOT_ALLOWED"):
        m.check_status_change("CLOSED", target.value, balance_t=0, pending_t=0)


@pytest.mark.parametrize("target", ALL_STATUSES)
def test_rejected_is_final(target: AccountStatus) -> None:
    with raises_code(Conflict, "STATUS_TRANSITION_NOT_ALLOWED"):
        m.check_status_change("REJECTED", target.value, balance_t=0, pending_t=0)


def test_status_machine_table() -> None:
    allowed = {(a, b) for a in ALL_STATUSES for b in ALL_STATUSES if b in m.STATUS_TRANSITIONS[a]}
    expected = {
        ("REQUESTED", "OPEN"),
        ("REQUESTED", "REJECTED"),
        ("OPEN", "RESTRICTED"),
        ("OPEN", "SUSPENDED"),
        ("OPEN", "CLOSURE_PENDING"),
        ("RESTRICTED", "OPEN"),
        ("RESTRICTED", "SUSPENDED"),
        ("RESTRICTED", "CLOSURE_PENDING"),
        ("SUSPENDED", "OPEN"),
        ("SUSPENDED", "RESTRICTED"),
        ("SUSPENDED", "CLOSURE_PENDING"),
        ("CLOSURE_PENDING", "OPEN"),
        ("CLOSURE_PENDING", "CLOSED"),
    }
    assert {(a.value, b.value) for a, b in allowed} == expected
    for a in ALL_STATUSES:
        for b in ALL_STATUSES:
            if (a.value, b.value) in expected:
                assert m.check_status_change(a.value, b.value, balance_t=0, pending_t=0) is b
            else:
                with raises_code(Conflict, "STATUS_TRANSITION_NOT_ALLOWED"):
                    m.check_status_change(a.value, b.value, balance_t=0, pending_t=0)


def test_open_cannot_close_directly() -> None:
    with raises_code(Conflict, "STATUS_TRANSITION_NOT_ALLOWED"):
        m.check_status_change("OPEN", "CLOSED", balance_t=0, pending_t=0)


@pytest.mark.parametrize(("balance", "pending"), [(1, 0), (0, 1), (10, 10)])
def test_closing_needs_zero_balance(balance: int, pending: int) -> None:
    with raises_code(Conflict, "ACCOUNT_NOT_EMPTY"):
        m.check_status_change("CLOSURE_PENDING", "CLOSED", balance_t=balance, pending_t=pending)
    # other moves do not care about the balance
    assert (
        m.check_status_change("CLOSURE_PENDING", "OPEN", balance_t=balance, pending_t=pending)
        is AccountStatus.OPEN
    )


def test_unknown_status() -> None:
    with raises_code(InvalidInput, "STATUS_UNKNOWN"):
        m.check_status_change("OPEN", "FROZEN", balance_t=0, pending_t=0)


# ---------------------------------------------------------------- route and initiator


def view(
    acc_type: AccountType,
    status: AccountStatus = AccountStatus.OPEN,
    *,
    ident: str = "",
    entity: str = "E1",
) -> AccountView:
    return AccountView(
        ident or f"{acc_type.value}-{status.value}-{entity}", acc_type, status, entity
    )


H, T, C = AccountType.HOLDING, AccountType.TRADING, AccountType.CUSTODY
ISS, SUR, CAN = AccountType.ISSUANCE, AccountType.SURRENDER, AccountType.CANCELLATION


@pytest.mark.parametrize(
    ("op", "sender", "receiver"),
    [
        (Op.ISSUE, None, view(ISS)),
        (Op.ALLOCATE, view(ISS), view(H)),
        (Op.ALLOCATE, view(ISS), view(C, AccountStatus.RESTRICTED)),
        (Op.TRANSFER, view(H), view(T, entity="E2")),
        (Op.TRANSFER, view(C), view(H, entity="E2")),
        (Op.SURRENDER, view(H, AccountStatus.RESTRICTED), view(SUR)),
        (Op.SURRENDER, view(T), view(SUR)),
        (Op.CANCEL, view(C), view(CAN)),
        (Op.COURT_TRANSFER, view(H, AccountStatus.SUSPENDED), view(H, entity="E2")),
        (Op.REVERSAL, view(SUR), view(H)),
        (Op.REVERSAL, view(H, AccountStatus.SUSPENDED), view(ISS)),
        (Op.CLAWBACK, view(H, AccountStatus.SUSPENDED), view(ISS)),
        (Op.CLAWBACK, view(T), view(ISS)),
    ],
)
def test_routes_allowed(op: Op, sender: AccountView | None, receiver: AccountView) -> None:
    m.check_route(m.operation(op), sender, receiver, UnitKind.CEA)


@pytest.mark.parametrize(
    ("op", "sender", "receiver", "error", "code"),
    [
        (Op.ISSUE, None, view(H), InvalidInput, "RECEIVER_TYPE_NOT_ALLOWED"),
        (Op.ALLOCATE, view(H), view(H, entity="E2"), InvalidInput, "SENDER_TYPE_NOT_ALLOWED"),
        (Op.ALLOCATE, view(ISS), view(SUR), InvalidInput, "RECEIVER_TYPE_NOT_ALLOWED"),
        (Op.ALLOCATE, view(ISS), view(H, AccountStatus.SUSPENDED), Conflict, "RECEIVER_STATUS"),
        (Op.TRANSFER, view(ISS), view(H), InvalidInput, "SENDER_TYPE_NOT_ALLOWED"),
        (Op.TRANSFER, view(H), view(SUR), InvalidInput, "RECEIVER_TYPE_NOT_ALLOWED"),
        (Op.TRANSFER, view(H), view(CAN), InvalidInput, "RECEIVER_TYPE_NOT_ALLOWED"),
        (Op.TRANSFER, view(H, AccountStatus.RESTRICTED), view(T), Conflict, "SENDER_STATUS"),
        (Op.TRANSFER, view(H, AccountStatus.SUSPENDED), view(T), Conflict, "SENDER_STATUS"),
        (Op.TRANSFER, view(H, AccountStatus.CLOSED), view(T), Conflict, "SENDER_STATUS"),
        (Op.TRANSFER, view(H, AccountStatus.REQUESTED), view(T), Conflict, "SENDER_STATUS"),
        (Op.TRANSFER, view(H), view(T, AccountStatus.CLOSED), Conflict, "RECEIVER_STATUS"),
        (Op.TRANSFER, view(H), view(T, AccountStatus.RESTRICTED), Conflict, "RECEIVER_STATUS"),
        (Op.TRANSFER, view(H), view(T, AccountStatus.CLOSURE_PENDING), Conflict, "RECEIVER_STATUS"),
        (Op.TRANSFER, view(H, ident="X"), view(H, ident="X"), InvalidInput, "SAME_ACCOUNT"),
        (Op.SURRENDER, view(C), view(SUR), InvalidInput, "SENDER_TYPE_NOT_ALLOWED"),
        (Op.SURRENDER, view(H), view(CAN), InvalidInput, "RECEIVER_TYPE_NOT_ALLOWED"),
        (Op.SURRENDER, view(H, AccountStatus.SUSPENDED), view(SUR), Conflict, "SENDER_STATUS"),
        (Op.CANCEL, view(H, AccountStatus.RESTRICTED), view(CAN), Conflict, "SENDER_STATUS"),
        (Op.COURT_TRANSFER, view(H, AccountStatus.CLOSED), view(T), Conflict, "SENDER_STATUS"),
        (Op.COURT_TRANSFER, view(H), view(SUR), InvalidInput, "RECEIVER_TYPE_NOT_ALLOWED"),
        (Op.CLAWBACK, view(C), view(ISS), InvalidInput, "SENDER_TYPE_NOT_ALLOWED"),
        (Op.CLAWBACK, view(H), view(H, entity="E2"), InvalidInput, "RECEIVER_TYPE_NOT_ALLOWED"),
        (Op.CLAWBACK, view(H, AccountStatus.CLOSED), view(ISS), Conflict, "SENDER_STATUS"),
        (
            Op.REVERSAL,
            view(H),
            view(H, AccountStatus.SUSPENDED, entity="E2"),
            Conflict,
            "RECEIVER_STATUS",
        ),
    ],
)
def test_routes_refused(
    op: Op, sender: AccountView | None, receiver: AccountView, error: type[DomainError], code: str
) -> None:
    with raises_code(error, code):
        m.check_route(m.operation(op), sender, receiver, UnitKind.CEA)


def test_a_posting_checks_the_statuses_again_when_the_units_move() -> None:
    """Between a proposal and its approval an account may have been suspended: the posting
    (`_post`, `decide_posting`) refuses then, and an issuance has no sender to check."""
    allocate, issue = m.operation(Op.ALLOCATE), m.operation(Op.ISSUE)
    m.check_posting(allocate, view(H), view(ISS))
    m.check_posting(issue, view(ISS), None)
    with raises_code(Conflict, "RECEIVER_STATUS"):
        m.check_posting(allocate, view(H, AccountStatus.SUSPENDED), view(ISS))
    with raises_code(Conflict, "SENDER_STATUS"):
        m.check_posting(m.operation(Op.CLAWBACK), view(ISS), view(H, AccountStatus.CLOSED))


def test_unit_kind_restriction() -> None:
    only_cea = replace(m.operation(Op.TRANSFER), unit_kinds=frozenset({UnitKind.CEA}))
    m.check_route(only_cea, view(H), view(T, entity="E2"), UnitKind.CEA)
    with raises_code(InvalidInput, "UNIT_KIND_NOT_ALLOWED"):
        m.check_route(only_cea, view(H), view(T, entity="E2"), UnitKind.CCER)
    with raises_code(InvalidInput, "UNIT_KIND_NOT_ALLOWED"):  # only allowances are clawed back
        m.check_route(m.operation(Op.CLAWBACK), view(H), view(ISS), UnitKind.CCER)


@pytest.mark.parametrize(
    ("op", "role", "actor_entity", "sender", "outcome"),
    [
        (Op.ISSUE, "operator", None, None, None),
        (Op.ISSUE, "enterprise", "E1", None, "INITIATOR_NOT_ALLOWED"),
        (Op.ALLOCATE, "member", "E1", view(ISS), "INITIATOR_NOT_ALLOWED"),
        (Op.TRANSFER, "enterprise", "E1", view(H, entity="E1"), None),
        (Op.TRANSFER, "member", "E1", view(T, entity="E1"), None),
        (Op.TRANSFER, "lender", "E1", view(C, entity="E1"), None),
        (Op.TRANSFER, "enterprise", "E2", view(H, entity="E1"), "NOT_ACCOUNT_HOLDER"),
        (Op.TRANSFER, "enterprise", None, view(H, entity="E1"), "NOT_ACCOUNT_HOLDER"),
        (Op.TRANSFER, "enterprise", "E1", None, "NOT_ACCOUNT_HOLDER"),
        (Op.TRANSFER, "verifier", "E1", view(H, entity="E1"), "INITIATOR_NOT_ALLOWED"),
        (Op.TRANSFER, "public", None, view(H, entity="E1"), "INITIATOR_NOT_ALLOWED"),
        (Op.TRANSFER, "bank", "E1", view(H, entity="E1"), "INITIATOR_NOT_ALLOWED"),
        (Op.SURRENDER, "participant", "E1", view(H, entity="E1"), "INITIATOR_NOT_ALLOWED"),
        (Op.CANCEL, "enterprise", "E1", view(H, entity="E1"), None),
        (Op.COURT_TRANSFER, "enterprise", "E1", view(H, entity="E1"), "INITIATOR_NOT_ALLOWED"),
        (Op.COURT_TRANSFER, "operator", None, view(H, entity="E1"), None),
        # operators move holders' units only by court order (maker–checker), never directly
        (Op.TRANSFER, "operator", None, view(H, entity="E1"), "INITIATOR_NOT_ALLOWED"),
        (Op.SURRENDER, "operator", None, view(H, entity="E1"), "INITIATOR_NOT_ALLOWED"),
        (Op.CANCEL, "operator", None, view(H, entity="E1"), "INITIATOR_NOT_ALLOWED"),
        (Op.REVERSAL, "enterprise", "E1", view(H, entity="E1"), "INITIATOR_NOT_ALLOWED"),
    ],
)
def test_initiators(
    op: Op, role: str, actor_entity: str | None, sender: AccountView | None, outcome: str | None
) -> None:
    if outcome is None:
        m.check_initiator(m.operation(op), role, actor_entity, sender)
    else:
        with raises_code(Forbidden, outcome):
            m.check_initiator(m.operation(op), role, actor_entity, sender)


def test_operation_lookup() -> None:
    assert m.operation("TRANSFER").code is Op.TRANSFER
    assert m.operation(Op.SURRENDER).reversal_window_days == 14
    with raises_code(InvalidInput, "OPERATION_UNKNOWN"):
        m.operation("STEAL")
    needs_checker = {o.code for o in m.OPERATIONS.values() if o.needs_approval}
    assert needs_checker == {Op.ISSUE, Op.ALLOCATE, Op.COURT_TRANSFER, Op.REVERSAL, Op.CLAWBACK}
    passes_suspend = {o.code for o in m.OPERATIONS.values() if o.passes_market_suspend}
    assert Op.TRANSFER not in passes_suspend and Op.CANCEL not in passes_suspend
    assert {Op.ALLOCATE, Op.SURRENDER} <= passes_suspend


# ---------------------------------------------------------------- balances


def test_balance_available() -> None:
    assert Balance().available == 0
    assert Balance(100, 30, 20).available == 50
    assert Balance(100, 100, 0).available == 0
    m.check_available(Balance(100, 30, 20), 50)
    with raises_code(Conflict, "INSUFFICIENT_AVAILABLE"):
        m.check_available(Balance(100, 30, 20), 51)
    m.check_available(Balance(100, 30, 20), 70, extra_t=20)  # a consumed freeze counts
    with raises_code(Conflict, "INSUFFICIENT_AVAILABLE"):
        m.check_available(Balance(100, 30, 20), 71, extra_t=20)


def test_untrusted_limit() -> None:
    m.check_untrusted(1000, 1000)
    with raises_code(Conflict, "UNTRUSTED_LIMIT_EXCEEDED"):
        m.check_untrusted(1000, 1001)


def test_market_suspended_error() -> None:
    err = m.market_suspended_error(m.operation(Op.TRANSFER))
    assert isinstance(err, Conflict) and err.code == "MARKET_SUSPENDED"


# ---------------------------------------------------------------- replay ledger


def test_ledger_replays_a_split_and_a_hold() -> None:
    led = m.Ledger()
    led.apply(
        "registry.transfer_completed",
        {
            "from": None,
            "to": "ISS",
            "unit_class": CEA,
            "quantity": 100,
            "blocks": [["420000", 1, 1, 100]],
        },
    )
    led.apply("registry.transfer_proposed", {"from": "ISS", "unit_class": CEA, "quantity": 30})
    led.apply(
        "registry.transfer_completed",
        {
            "from": "ISS",
            "to": "A",
            "unit_class": CEA,
            "quantity": 30,
            "blocks": [["420000", 1, 71, 100]],
        },
    )
    led.apply("registry.hold_placed", {"account": "A", "unit_class": CEA, "quantity": 10})
    assert led.balances[("ISS", CEA)] == [70, 0, 0]
    assert led.balances[("A", CEA)] == [30, 0, 10]
    assert led.blocks == {"ISS": {blk(1, 70)}, "A": {blk(71, 100)}}
    led.apply("registry.hold_released", {"account": "A", "unit_class": CEA, "quantity": 10})
    led.apply("registry.transfer_proposed", {"from": "A", "unit_class": CEA, "quantity": 5})
    led.apply("registry.transfer_voided", {"from": "A", "unit_class": CEA, "quantity": 5})
    assert led.balances[("A", CEA)] == [30, 0, 0]
