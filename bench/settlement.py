"""End-of-day DvP settlement of one trading day's trades (default 100,000) in one settle_day call.

    python bench/settlement.py --json
    python bench/settlement.py --trades 5000 --json
    CARBONHUB_DATABASE_URL=postgresql:///postgres python bench/settlement.py --json

Set-up (not timed): a fresh database (SQLite: a temporary file, WAL with synchronous=FULL as the
engine sets it; PostgreSQL when CARBONHUB_DATABASE_URL is set: a new database on that server,
dropped afterwards; existing databases are never touched), migrated and bootstrapped; two
operators, a settlement bank, ~50 enterprise members each with an open holding account holding
units and a funded cash account, and HBEA2023 listed under the "hubei" preset (continuous
trading, middle price rule, reference price 80.00), all through the services, on a settable
clock at Monday 2026-11-23 10:00 Asia/Shanghai.

Producing the trades (timed apart, not the figure): the exchange's own batch path,
ExchangeService._run_batch([Command(...), ...]) — what the group-commit writer runs, one
transaction per batch of --batch commands, each command in its own savepoint — with pairs of
continuous LIMIT orders: a sell from one member, then a buy from another member at the same price
and quantity (79.50–80.50 yuan on the 0.01 tick, 1–100 t), so each pair empties the book again and
makes exactly one trade; every order freezes units (sell) or cash plus fees (buy) as in
production. Any refused command stops the bench.

Timed: the clock moves to 15:30 the same day and SettlementService.settle_day(operator, day)
runs once: it closes the day's books and settles every trade of the day delivery versus payment
(units from the seller's reservation to the buyer's account, cash and fees from the buyer's
freeze) in one transaction. Wall seconds and this process's CPU seconds are reported.

After it (not timed): carbonhub.verify.verify(db) (a failed check exits 1) and the clearing
report's totals, which must show every trade settled.

stdout gets one JSON object with --json (a short text summary otherwise); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from benchlib import (
    HUBEI_INSTRUMENT,
    HUBEI_REFERENCE_FEN,
    BenchMarket,
    code_version,
    durability_settings,
    fresh_database,
    machine,
    setup_hubei_market,
)

from carbonhub.core.auth import Actor
from carbonhub.core.db import Database
from carbonhub.core.errors import DomainError
from carbonhub.exchange import store as xs
from carbonhub.exchange.service import Command
from carbonhub.verify import verify

INSTRUMENT = HUBEI_INSTRUMENT
REFERENCE_FEN = HUBEI_REFERENCE_FEN
DAY = date(2026, 11, 23)  # a Monday
TRADING_AT = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # 10:00 Asia/Shanghai
SETTLING_AT = datetime(2026, 11, 23, 7, 30, tzinfo=UTC)  # 15:30, after the close
SQLITE_TARGET_S = 60.0
TARGET_TRADES = 100_000


def log(message: str) -> None:
    print(f"[settlement] {message}", file=sys.stderr, flush=True)


def pair_commands(members: Sequence[Actor], trades: int, seed: int, tag: str) -> list[Command]:
    """A sell, then a buy from another member at the same price and quantity, per trade."""
    rng = random.Random(seed)
    out: list[Command] = []
    for i in range(trades):
        seller, buyer = rng.sample(list(members), 2)
        fen = REFERENCE_FEN + rng.randint(-50, 50)
        price = f"{fen // 100}.{fen % 100:02d}"
        qty = rng.randint(1, 100)
        for side, actor in (("S", seller), ("B", buyer)):
            data = {
                "instrument": INSTRUMENT,
                "mode": "CONTINUOUS",
                "side": side,
                "price": price,
                "quantity": qty,
                "tif": "LIMIT",
            }
            out.append(Command(actor, f"bench-st-{tag}-{i:07d}-{side}", "place_order", data))
    return out


def produce_trades(market: BenchMarket, commands: Sequence[Command], batch: int) -> float:
    """Runs the commands through the exchange's batch path; returns wall seconds."""
    t0 = time.perf_counter()
    step = max(1, len(commands) // 10)
    next_note = step
    for start in range(0, len(commands), batch):
        chunk = commands[start : start + batch]
        results = market.exchange._run_batch(chunk)
        refused = [(c, r) for c, r in zip(chunk, results, strict=True) if isinstance(r, Exception)]
        if refused:
            c, r = refused[0]
            detail = f"{r.code}: {r.message}" if isinstance(r, DomainError) else repr(r)
            raise SystemExit(f"{len(refused)} commands refused, first {c.key}: {detail}")
        done = start + len(chunk)
        if done >= next_note:
            rate = done / (time.perf_counter() - t0)
            log(f"  {done:,}/{len(commands):,} order commands ({rate:,.0f}/s)")
            next_note += step
    return time.perf_counter() - t0


def count_trades(db: Database) -> tuple[int, int]:
    with db.engine.connect() as c:
        trades = c.execute(
            sa.select(sa.func.count())
            .select_from(xs.trades)
            .where(xs.trades.c.trading_day == DAY.isoformat())
        ).scalar_one()
        resting = c.execute(
            sa.select(sa.func.count()).select_from(xs.orders).where(xs.orders.c.status == "OPEN")
        ).scalar_one()
    return int(trades), int(resting)


# ------------------------------------------------------------------ one run


@dataclass
class Run:
    figures: dict[str, Any]
    problems: list[str]


def one_run(args: argparse.Namespace, base_url: str | None, index: int) -> Run:
    tag = f"r{index}-{uuid.uuid4().hex[:6]}"
    problems: list[str] = []
    with fresh_database(base_url) as db:
        t_setup = time.perf_counter()
        market = setup_hubei_market(
            db,
            args.members,
            units_each=args.units_each,
            cash_each="10000000000.00",
            tag=tag,
            at=TRADING_AT,
        )
        commands = pair_commands(market.members, args.trades, args.seed + index, tag)
        log(
            f"run {index + 1}: setup {time.perf_counter() - t_setup:.1f}s ({args.members} "
            f"members, {db.backend}); producing {args.trades:,} trades "
            f"({len(commands):,} orders, batches of {args.batch})"
        )
        produce_s = produce_trades(market, commands, args.batch)
        trades, resting = count_trades(db)
        if trades != args.trades:
            problems.append(f"{trades} trades produced, {args.trades} planned")
        if resting:
            problems.append(f"{resting} orders left resting (each pair should fill)")
        log(
            f"run {index + 1}: {trades:,} trades in {produce_s:.1f}s "
            f"({len(commands) / produce_s:,.0f} orders/s); settling {DAY}"
        )
        market.clock.now = SETTLING_AT
        load0 = os.getloadavg()[0]
        error: str | None = None
        out: dict[str, Any] = {}
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            out = market.settlement.settle_day(market.operator, DAY)
        except Exception as err:  # a failure of the code measured: report it, then verify
            error = f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"
            problems.append(f"settle_day raised {error}")
        settle_s, settle_cpu = time.perf_counter() - t0, time.process_time() - c0
        load1 = os.getloadavg()[0]
        total = out.get("total") or market.settlement.report(DAY)["total"]
        if out.get("settled_now") != trades or total["settled"] != trades or total["failed"]:
            problems.append(
                f"settled_now {out.get('settled_now')}, report settled {total['settled']} failed "
                f"{total['failed']}, trades {trades}"
            )
        t_verify = time.perf_counter()
        report = verify(db)
        verify_s = time.perf_counter() - t_verify
        problems.extend(report.problems)
        durability = durability_settings(db)
    log(
        f"run {index + 1}: settle_day {settle_s:.2f}s ({settle_cpu:.2f}s CPU) for "
        f"{trades:,} trades{f' FAILED: {error}' if error else ''}: {total['settled']:,} "
        f"settled, {total['failed']} failed; verify {verify_s:.1f}s: "
        f"{'ok' if report.ok else report.problems[:3]}"
    )
    figures: dict[str, Any] = {
        "trades": trades,
        # no figure for a run that failed: its time is only how long it took to fail
        "settle_seconds": None if error else round(settle_s, 3),
        "settle_cpu_seconds": None if error else round(settle_cpu, 3),
        "trades_per_s": round(trades / settle_s, 1) if settle_s and not error else None,
        "produce_seconds": round(produce_s, 2),
        "produce_orders_per_s": round(len(commands) / produce_s, 1) if produce_s else 0.0,
        "settled_now": out.get("settled_now"),
        "failed_now": out.get("failed_now"),
        "report_total": total,
        "run": {k: v for k, v in (out.get("run") or {}).items() if k != "checksum"},
        "verified": report.ok,
        "verify": {"entries": report.entries, "seconds": round(verify_s, 1)},
        "load_avg_1m": [round(load0, 2), round(load1, 2)],
        "durability": durability,
    }
    if error is not None:
        figures["settle_error"] = error
        figures["seconds_until_error"] = round(settle_s, 3)
    if report.problems:
        figures["verify_problems"] = report.problems[:10]
    return Run(figures, problems)


# ------------------------------------------------------------------ main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--trades", type=int, default=100_000, help="trades in the day to settle")
    p.add_argument("--batch", type=int, default=500, help="order commands per _run_batch call")
    p.add_argument("--members", type=int, default=50, help="members trading (≥ 2)")
    p.add_argument("--units-each", type=int, default=50_000_000, help="tonnes per member")
    p.add_argument("--repeat", type=int, default=1, help="runs (fresh database each)")
    p.add_argument("--seed", type=int, default=20261123)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    if args.trades < 1 or args.batch < 1 or args.repeat < 1 or args.members < 2:
        p.error("--trades, --batch and --repeat must be positive, --members ≥ 2")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # A plain kill still runs the finally blocks that drop a scratch PostgreSQL database.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    host = machine()
    code = code_version()
    env_url = os.environ.get("CARBONHUB_DATABASE_URL", "")
    base_url = env_url if env_url.startswith("postgres") else None
    backend = "postgresql" if base_url else "sqlite"
    runs = [one_run(args, base_url, i) for i in range(args.repeat)]
    figs = [r.figures for r in runs]
    timed = [f["settle_seconds"] for f in figs if f["settle_seconds"] is not None]
    seconds = statistics.median(timed) if timed else None
    verified = all(f["verified"] for f in figs)
    settled_all = all(f["report_total"]["settled"] == f["trades"] == args.trades for f in figs)
    result: dict[str, Any] = {
        "machine": host,
        "benchmark": "settlement",
        "backend": backend,
        "parameters": {
            "trades": args.trades,
            "batch": args.batch,
            "members": args.members,
            "repeat": args.repeat,
            "seed": args.seed,
            "instrument": f"{INSTRUMENT} (hubei preset, CONTINUOUS)",
            "day": DAY.isoformat(),
        },
        "settle_seconds": None if seconds is None else round(seconds, 3),
        "trades_per_s": round(args.trades / seconds, 1) if seconds else None,
        "produce_seconds": round(statistics.median(f["produce_seconds"] for f in figs), 2),
        "verified": verified,
        "all_settled": settled_all,
        "runs": figs,
    }
    if backend == "sqlite":
        # The target is for 100,000 trades; a smaller run only shows its pro-rata share.
        result["target"] = {"settle_seconds_below": SQLITE_TARGET_S, "for_trades": TARGET_TRADES}
        if args.trades >= TARGET_TRADES:
            result["meets_target"] = (
                seconds is not None and seconds < SQLITE_TARGET_S and verified and settled_all
            )
        else:
            pro_rata = SQLITE_TARGET_S * args.trades / TARGET_TRADES
            result["target"]["pro_rata_seconds"] = round(pro_rata, 3)
            result["meets_target"] = None  # not judged below the target's size
            result["within_pro_rata"] = (
                seconds is not None and seconds < pro_rata and verified and settled_all
            )
    if code_version()["sources_sha256"] != code["sources_sha256"]:
        code["changed_during_run"] = True
    result["code"] = code
    problems = [p for r in runs for p in r.problems]
    if problems:
        result["problems"] = problems[:20]
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        took = "FAILED" if seconds is None else f"{seconds:.2f}s"
        print(
            f"{backend}: settle_day {took} for {args.trades:,} trades (producing them took "
            f"{result['produce_seconds']}s); verified {verified}; all settled {settled_all}"
        )
    if not verified or problems:
        print(f"PROBLEMS: {problems[:10]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
