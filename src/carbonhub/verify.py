"""`carbonhub verify`: the independent check. Recomputes the journal chain and checkpoints, then
invariants 1–3 from the stored tables, 4 (cash) and 5 (settlement), and 6 by replaying the
journal and every order book's command log; names the first break."""

from __future__ import annotations

from dataclasses import dataclass, field

from carbonhub.core import journal
from carbonhub.core.db import Database
from carbonhub.exchange.service import ExchangeService
from carbonhub.registry.service import RegistryService, ledger_problems, replay_problems
from carbonhub.settlement.service import CashService, settlement_problems
from carbonhub.settlement.service import ledger_problems as cash_problems


@dataclass
class Report:
    entries: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, object]:
        return {"ok": self.ok, "entries": self.entries, "problems": self.problems}


def verify(db: Database) -> Report:
    report = Report()
    with db.read() as uow:
        count, brk = journal.verify_chain(uow.conn)
        report.entries = count
        if brk is not None:
            report.problems.append(f"journal entry {brk.seq}: {brk.reason}")
        report.problems.extend(ledger_problems(uow.conn))
        report.problems.extend(replay_problems(uow.conn))
        report.problems.extend(cash_problems(uow.conn))
        exchange = ExchangeService(db, RegistryService(db), CashService(db))
        report.problems.extend(exchange.replay_problems(uow.conn))
        report.problems.extend(settlement_problems(uow.conn, exchange))
    return report
