"""Database: one SQLAlchemy Core metadata, the engine for SQLite or PostgreSQL, the unit of work.

SQLite runs in WAL mode with foreign keys on and synchronous=FULL, and every transaction starts
with BEGIN IMMEDIATE so writers queue instead of failing on lock upgrade. PostgreSQL runs at
READ COMMITTED; services lock rows with SELECT ... FOR UPDATE in a fixed order.
"""

from __future__ import annotations

import collections
import operator
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from carbonhub.core.settings import Settings

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def normalise_url(url: str) -> str:
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def is_memory_url(url: str) -> bool:
    """An SQLite database in this process's memory: no other process can open it."""
    url = normalise_url(url)
    return url.startswith("sqlite") and (
        url.rstrip("/") in ("sqlite:", "sqlite") or ":memory:" in url or "mode=memory" in url
    )


def make_engine(url: str) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 60},
            pool_size=8,
            max_overflow=16,
        )

        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.execute("PRAGMA cache_size=-65536")  # 64 MiB of page cache per connection
            cur.close()

        @sa.event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            readonly = conn.get_execution_options().get("carbonhub_readonly", False)
            # on the driver: SQLAlchemy's statement path costs ~50 µs for these 15 bytes
            driver: Any = conn.connection.driver_connection
            driver.execute("BEGIN" if readonly else "BEGIN IMMEDIATE")

        return engine
    return sa.create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def _tuple_of(names: Sequence[str]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    get = operator.itemgetter(*names)
    if len(names) == 1:
        return lambda row: (get(row),)
    return get


class _Prepared:
    """A statement compiled once for a dialect, with what running it on the driver needs."""

    __slots__ = (
        "compiled",
        "expanded",
        "lists",
        "literals",
        "names",
        "plain",
        "row",
        "statement",
        "values",
    )

    def __init__(self, statement: Any, dialect: Any, keys: Sequence[str] | None) -> None:
        self.statement = statement
        compiled: Any = statement.compile(dialect=dialect, column_keys=keys and list(keys))
        self.compiled = compiled
        # the statement's own values (`compiled.params` works them out anew on every read)
        self.literals: dict[str, Any] = dict(compiled.params)
        # the IN lists' parameter names, and their SQL by the lists' lengths (positional styles)
        self.lists = frozenset(compiled.bind_names[b] for b in compiled.post_compile_params)
        self.expanded: dict[tuple[int, ...], str] = {}
        self.names: tuple[str, ...] | None = (
            tuple(compiled.positiontup) if compiled.positional else None
        )
        # a row's values in the driver's order, as a tuple (positional styles)
        self.values: Callable[[dict[str, Any]], tuple[Any, ...]] | None = (
            _tuple_of(self.names) if self.names else None
        )
        results = compiled._result_columns
        # a type that converts values on the way in or out: SQLAlchemy runs it, not the driver
        self.plain = not compiled._bind_processors and all(
            rc[3]._cached_result_processor(dialect, None) is None for rc in results
        )
        self.row: Any = (
            collections.namedtuple("Row", [rc[0] for rc in results], rename=True)
            if results
            else None
        )

    def bind(self, params: dict[str, Any]) -> tuple[str, Any]:
        c = self.compiled
        values = {**self.literals, **params} if self.literals else params
        lists, names = self.lists, self.names
        if names is None:  # named parameters (psycopg)
            if lists:
                state = c.construct_expanded_state(params)
                return state.statement, state.parameters
            return c.string, values
        if not lists:
            return c.string, self.values(values) if self.values else ()
        # the SQL depends only on the lists' lengths; the values go in order
        shape = tuple(len(values[n]) for n in names if n in lists)
        sql = self.expanded.get(shape)
        if sql is None:
            sql = self.expanded[shape] = c.construct_expanded_state(params).statement
        args: list[Any] = []
        for n in names:
            if n in lists:
                args.extend(values[n])
            else:
                args.append(values[n])
        return sql, tuple(args)


# (dialect, id of the statement) → compiled, literals and all; the entry keeps the statement
# alive, so its id cannot be reused while cached
_prepared: dict[tuple[str, int], _Prepared] = {}
# statements met once, kept alive the same way: only one met again (a module constant) is
# compiled here; one built for a single call goes through SQLAlchemy, whose cache finds it
# by its structure, where compiling it here each time cost about 0.7 ms
_met_once: dict[tuple[str, int], Any] = {}


def _prepare(conn: Connection, statement: Any) -> _Prepared | None:
    key = (conn.dialect.name, id(statement))
    found = _prepared.get(key)
    if found is not None and found.statement is statement:
        return found
    if _met_once.pop(key, None) is not statement:
        if len(_met_once) > 2000:
            _met_once.clear()
        _met_once[key] = statement
        return None
    if len(_prepared) > 2000:
        _prepared.clear()
    found = _prepared[key] = _Prepared(statement, conn.dialect, None)
    return found


def fetch(conn: Connection, statement: sa.Select[Any], **params: Any) -> list[Any]:
    """The rows of a statement built once (a module constant with bind parameters), run on the
    driver's cursor: SQLAlchemy spends about 25 µs per execution even on a cached statement,
    the driver about 2. Rows read like SQLAlchemy's (attributes, `_asdict()`)."""
    p = _prepare(conn, statement)
    if p is None or not p.plain or p.row is None:
        return list(conn.execute(statement, params).all())
    sql, args = p.bind(params)
    make = p.row._make
    return [make(r) for r in conn.connection.driver_connection.execute(sql, args).fetchall()]  # type: ignore[union-attr]


def first(conn: Connection, statement: sa.Select[Any], **params: Any) -> Any | None:
    """`fetch`'s first row, or None."""
    found = fetch(conn, statement, **params)
    return found[0] if found else None


def run(conn: Connection, statement: sa.Executable, **params: Any) -> int:
    """`fetch` for a statement that returns none (an update by key, say): the rows it hit."""
    p = _prepare(conn, statement)
    if p is None or not p.plain:
        return int(conn.execute(statement, params).rowcount)
    sql, args = p.bind(params)
    cursor = conn.connection.driver_connection.execute(sql, args)  # type: ignore[union-attr]
    return int(cursor.rowcount)


def execute_many(
    conn: Connection, statement: sa.Insert | sa.Update, rows: Sequence[dict[str, Any]]
) -> None:
    """One executemany of plain values, without SQLAlchemy's per-row parameter processing.

    That processing is most of the Python cost of writing a hundred thousand rows (the
    settlement run). It is skipped only where no column needs a bind conversion (strings,
    integers); otherwise `conn.execute` runs as usual. Every row must have the same keys.
    Each statement is compiled once, found again by SQLAlchemy's cache key (which a statement
    built once, a module constant, computes only once).
    """
    if not rows:
        return
    keys = tuple(rows[0]) if isinstance(statement, sa.Insert) else None
    # its structure part identifies the SQL, and every value comes from `rows` (a literal in
    # the statement would be a missing parameter: loud)
    statement_key = statement._generate_cache_key()
    cache_key = (conn.dialect.name, statement_key and statement_key.key, keys)
    p = _compiled_many.get(cache_key) if statement_key is not None else None
    if p is None:
        p = _Prepared(statement, conn.dialect, keys)
        if len(_compiled_many) > 1000:
            _compiled_many.clear()
        _compiled_many[cache_key] = p
    if not p.plain:  # a type that converts values: let SQLAlchemy do it
        conn.execute(statement, list(rows))
        return
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    if p.values is not None:
        cursor.executemany(p.compiled.string, list(map(p.values, rows)))
    else:
        cursor.executemany(p.compiled.string, list(rows))
    cursor.close()


# (dialect, statement's cache key, insert's columns) → compiled
_compiled_many: dict[tuple[Any, ...], _Prepared] = {}


_inserts: dict[str, sa.Insert] = {}  # one per table: its cache key is computed once


def insert_many(conn: Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    statement = _inserts.get(table.name)
    if statement is None:
        statement = _inserts[table.name] = sa.insert(table)
    execute_many(conn, statement, rows)


def commit_stamp(uow: UnitOfWork) -> tuple[Any, int] | None:
    """SQLite: this transaction's connection and its data_version. Two transactions on one
    connection have equal stamps exactly when no other connection committed between them (its
    own commits do not count). None on PostgreSQL, which keeps no such counter."""
    if uow.conn.dialect.name != "sqlite":
        return None
    driver: Any = uow.conn.connection.driver_connection
    return driver, driver.execute("PRAGMA data_version").fetchone()[0]


class UnitOfWork:
    """One database transaction. Leaving the block without commit() rolls back."""

    def __init__(self, engine: Engine, clock: Clock, *, readonly: bool = False) -> None:
        self._engine = engine
        self._clock = clock
        self._readonly = readonly

    def __enter__(self) -> UnitOfWork:
        self.conn = self._engine.connect()
        if self._readonly:
            self.conn = self.conn.execution_options(carbonhub_readonly=True)
        self._tx = self.conn.begin()
        self.now = self._clock()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._tx.is_active:
                self._tx.rollback()
        finally:
            self.conn.close()

    @property
    def is_postgres(self) -> bool:
        return self.conn.dialect.name == "postgresql"

    def commit(self) -> None:
        self._tx.commit()


class Database:
    """The engine, settings and clock the services share. Tests swap the clock."""

    def __init__(self, settings: Settings | None = None, clock: Clock = utc_now) -> None:
        self.settings = settings or Settings()
        self.engine = make_engine(self.settings.database_url)
        self.clock = clock

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.engine, self.clock)

    def read(self) -> UnitOfWork:
        """A transaction for queries: on SQLite it does not take the write lock."""
        return UnitOfWork(self.engine, self.clock, readonly=True)

    def dispose(self) -> None:
        self.engine.dispose()
