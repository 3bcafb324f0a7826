"""Fast paths of small things every order touches: ids, stored times, stored answers. Each must
give what the plain version gave (uuid.UUID, strftime/strptime, json.dumps)."""

from __future__ import annotations

import collections
import json
import os
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carbonhub.core.idempotency import key_row
from carbonhub.core.ids import new_id, uuid7
from carbonhub.core.timefmt import iso, parse_iso

FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def test_a_forked_child_draws_other_ids_than_its_parent() -> None:
    new_id()  # the parent has randomness buffered
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent
        os.write(write, " ".join(new_id() for _ in range(50)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as child:
        theirs = set(child.read().split())
    ours = {new_id() for _ in range(50)}
    assert len(theirs) == 50 and not ours & theirs
    assert {t[19:] for t in theirs}.isdisjoint({o[19:] for o in ours})  # the random tails


def test_new_ids_are_uuid7_text_unique_and_in_creation_order() -> None:
    ids = [new_id() for _ in range(5000)] + [str(uuid7())] + [new_id() for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    for text in ids[::97]:
        parsed = uuid.UUID(text)
        assert (str(parsed), parsed.version, parsed.variant) == (text, 7, uuid.RFC_4122)


moments = st.datetimes(
    min_value=datetime(1000, 1, 1),
    max_value=datetime(9999, 12, 30),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5))]),
)


@given(moments)
def test_iso_and_parse_iso_are_strftime_and_strptime(moment: datetime) -> None:
    text = iso(moment)
    assert text == moment.astimezone(UTC).strftime(FORMAT)
    back = parse_iso(text)
    assert back == datetime.strptime(text, FORMAT).replace(tzinfo=UTC) == moment
    assert back.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-23T02:00:00.000000+0",
        "2026-11-23 02:00:00.000000Z",
        "2026-11-23T02:00:00Z",
        "2026-11-23T02:00:00.000000+00:00",
        "2026-13-23T02:00:00.000000Z",
        "x" * 27,
        "2026-W47-1T02:00:00.000000Z",  # an ISO week date: fromisoformat would take it
        "",
    ],
)
def test_parse_iso_refuses_any_other_text(text: str) -> None:
    with pytest.raises(ValueError):
        parse_iso(text)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**62), 2**62) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=20,
)


@given(json_values)
def test_a_stored_answer_reads_back_as_json_dumps_wrote_it(result: Any) -> None:
    stored = key_row("alice", "k-00000001", "place_order", "digest", result, "now")["result"]
    assert json.loads(stored) == json.loads(json.dumps(result, sort_keys=True, default=str))


def test_a_stored_answer_turns_other_values_into_their_text_as_before() -> None:
    row = collections.namedtuple("row", "a b")
    result = {
        "day": datetime(2026, 11, 23, 2, 0).date(),
        "at": datetime(2026, 11, 23, 2, 0),
        "row": row(1, (2, "x")),
        "by_number": {1: "one", 2: ["two"]},
    }
    stored = key_row("alice", "k-00000001", "place_order", "digest", result, "now")["result"]
    assert json.loads(stored) == json.loads(json.dumps(result, sort_keys=True, default=str))
