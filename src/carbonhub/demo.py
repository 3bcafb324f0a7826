"""`carbonhub demo`: a realistic demo market, built only through the services so the journal verifies.

Two registry operators, a verifier, a bank, twenty covered enterprises in Hubei across power,
steel, cement and aluminium, CEA for 2023 and 2024 allocated by maker–checker, a CCER project,
transfers, a pledge, a surrender and a voluntary cancellation. Then the exchange: every
enterprise a member with a funded cash account, CEA2023 and CEA2024 under the national rules and
HBEA2024 under Hubei's, and about three months of trading history made by running orders, takes,
block deals and auctions through the engine on a simulated clock, each day settled DvP. Last,
two whole compliance years (2021 and 2022) for the seven power plants: evidence imported, each
year's cycle run by its parties, one entity in deficit in 2021 with its penalty and deduction.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from carbonhub.compliance.cycle import Cast, run_cycle
from carbonhub.compliance.service import ComplianceService
from carbonhub.core.auth import AuthService
from carbonhub.core.db import Database
from carbonhub.core.ids import new_id
from carbonhub.core.timefmt import SHANGHAI, iso
from carbonhub.exchange.service import ExchangeService
from carbonhub.registry import store
from carbonhub.registry.service import RegistryService
from carbonhub.settlement.service import CashService, SettlementService

DEMO_PASSWORD = "carbonhub-demo"
SEEDED_FLAG = "demo_seeded"

# (name, English name, sector, annual allocation in t) — names are illustrative, not real holdings.
ENTERPRISES: list[tuple[str, str, str, int]] = [
    ("华能武汉发电有限责任公司", "Huaneng Wuhan Power", "power", 4_200_000),
    ("国电长源荆门发电有限公司", "Guodian Changyuan Jingmen Power", "power", 3_600_000),
    ("大唐黄石发电有限责任公司", "Datang Huangshi Power", "power", 2_900_000),
    ("华电襄阳发电有限公司", "Huadian Xiangyang Power", "power", 3_100_000),
    ("湖北能源鄂州发电有限公司", "Hubei Energy Ezhou Power", "power", 3_800_000),
    ("国家电投湖北十堰热电有限公司", "SPIC Shiyan Thermal Power", "power", 1_200_000),
    ("武汉钢铁有限公司", "Wuhan Iron and Steel", "steel", 6_500_000),
    ("大冶特殊钢有限公司", "Daye Special Steel", "steel", 2_400_000),
    ("鄂城钢铁有限责任公司", "Echeng Iron and Steel", "steel", 3_300_000),
    ("湖北金盛兰冶金科技有限公司", "Jinshenglan Metallurgy", "steel", 1_900_000),
    ("华新水泥股份有限公司", "Huaxin Cement", "cement", 2_800_000),
    ("葛洲坝宜城水泥有限公司", "Gezhouba Yicheng Cement", "cement", 1_100_000),
    ("湖北京兰水泥集团有限公司", "Jinglan Cement", "cement", 1_300_000),
    ("亚东水泥(黄冈)有限公司", "Yadong Cement Huanggang", "cement", 900_000),
    ("湖北宜化集团铝业有限公司", "Yihua Aluminium", "aluminium", 1_700_000),
    ("华中铝业有限公司", "Central China Aluminium", "aluminium", 1_400_000),
    ("湖北鑫宏铝材有限公司", "Xinhong Aluminium", "aluminium", 600_000),
    ("襄阳华中铝业加工有限公司", "Xiangyang Aluminium Processing", "aluminium", 500_000),
    ("湖北长江电力热电联产有限公司", "Changjiang CHP", "power", 1_500_000),
    ("武汉东湖碳资产管理有限公司", "Donghu Carbon Asset Management", "trading", 0),
]

_CREDIT_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"


def _credit_code(rng: random.Random) -> str:
    return "91420" + "".join(rng.choice(_CREDIT_ALPHABET) for _ in range(13))


def is_seeded(db: Database) -> bool:
    """Seeded already, or holding a real market (any user): either way, leave it alone."""
    with db.uow() as uow:
        return store.flag(uow.conn, SEEDED_FLAG) == "1" or AuthService(db).user_count() > 0


def seed(db: Database, *, seed_value: int = 2026) -> dict[str, Any]:
    """Seed once; a second call finds the flag and returns without changing anything."""
    reg, auth = RegistryService(db), AuthService(db)
    reg.bootstrap()
    if is_seeded(db):
        return {"seeded": False, "logins": logins()}
    rng = random.Random(seed_value)
    key = new_id
    auth.create_user("op_zhang", DEMO_PASSWORD, "operator", display_name="张敏 (登记机构经办)")
    auth.create_user("op_li", DEMO_PASSWORD, "operator", display_name="李强 (登记机构复核)")
    body = auth.create_entity(
        "中环联合(北京)认证中心有限公司",
        "verifier",
        _credit_code(rng),
        name_en="CEC Verification",
        region="北京",
    )
    auth.create_user(
        "verifier_wang", DEMO_PASSWORD, "verifier", body["id"], display_name="王审核 (核查机构)"
    )
    maker = auth.authenticate("op_zhang", DEMO_PASSWORD)
    checker = auth.authenticate("op_li", DEMO_PASSWORD)

    bank = auth.create_entity(
        "汉口银行股份有限公司", "bank", _credit_code(rng), name_en="Hankou Bank", region="武汉"
    )
    auth.create_user(
        "bank_hankou", DEMO_PASSWORD, "lender", bank["id"], display_name="汉口银行 绿色金融部"
    )
    auth.create_user(
        "bank_clearing", DEMO_PASSWORD, "bank", bank["id"], display_name="汉口银行 结算部"
    )

    holders: list[tuple[str, Any, str, int]] = []  # (account, actor, sector, allocation)
    for i, (name, name_en, sector, allocation) in enumerate(ENTERPRISES, start=1):
        ent = auth.create_entity(
            name, "enterprise", _credit_code(rng), name_en=name_en, sector=sector, region="湖北"
        )
        username = f"ent{i:02d}"
        auth.create_user(username, DEMO_PASSWORD, "enterprise", ent["id"], display_name=name)
        who = auth.authenticate(username, DEMO_PASSWORD)
        acc = reg.request_account(who, key(), type="HOLDING", name=f"{name} 持有账户")
        reg.decide_account(maker, key(), acc["id"], approve=True)
        holders.append((acc["id"], who, sector, allocation))

    # CEA for two compliance years: issue, then allocate to covered entities as one batch each.
    for year, factor in ((2023, 1.0), (2024, 0.97)):
        cls = f"CEA-{year}"
        rows = [(acc, cls, int(alloc * factor)) for acc, _, _, alloc in holders if alloc]
        issued = reg.issue(
            maker,
            key(),
            unit_class=cls,
            quantity=sum(q for _, _, q in rows) + 5_000_000,
            reason=f"{year} 年度配额预分配",
        )
        reg.approve(checker, key(), issued["id"])
        batch = reg.allocate_bulk(maker, key(), rows)["batch_ref"]
        reg.approve_batch(checker, key(), batch)

    # A CCER project: issued to the registry, allocated to the project owner.
    ccer = "CCER-2021-P000123"
    issued = reg.issue(
        maker,
        key(),
        unit_class=ccer,
        quantity=250_000,
        origin="P000123",
        reason="随州风电项目 2021 年减排量",
    )
    reg.approve(checker, key(), issued["id"])
    owner_acc, owner, _, _ = holders[-1]
    al = reg.allocate(maker, key(), to_account=owner_acc, unit_class=ccer, quantity=250_000)
    reg.approve(checker, key(), al["id"])

    # Secondary movements: trades settled as transfers between holders.
    power = [h for h in holders if h[2] == "power"]
    steel = [h for h in holders if h[2] == "steel"]
    for _ in range(24):
        (src, who, _, _), (dst, _, _, _) = rng.choice(power), rng.choice([*steel, holders[-1]])
        reg.transfer(
            who,
            key(),
            from_account=src,
            to_account=dst,
            unit_class="CEA-2023",
            quantity=rng.randrange(1_000, 60_000),
            reason="协议转让",
        )
    reg.transfer(
        owner,
        key(),
        from_account=owner_acc,
        to_account=holders[6][0],
        unit_class=ccer,
        quantity=80_000,
        reason="CCER 购买",
    )

    # A pledge to the bank, a surrender and a voluntary cancellation.
    reg.place_hold(
        holders[0][1],
        key(),
        account_id=holders[0][0],
        unit_class="CEA-2024",
        quantity=500_000,
        kind="PLEDGE",
        lien_holder=bank["id"],
        reason="碳排放权质押贷款",
    )
    reg.surrender(
        holders[2][1],
        key(),
        from_account=holders[2][0],
        unit_class="CEA-2023",
        quantity=2_000_000,
        compliance_year=2023,
    )
    reg.cancel(
        owner,
        key(),
        from_account=owner_acc,
        unit_class=ccer,
        quantity=5_000,
        beneficiary="2026 武汉马拉松组委会",
        reason="赛事碳中和",
    )
    # A proposal left for the checker, so the approval queue is not empty.
    reg.issue(maker, key(), unit_class="CEA-2024", quantity=300_000, reason="新增产能预留")

    seed_market(db, holders, maker, auth.authenticate("bank_clearing", DEMO_PASSWORD), rng)
    seed_compliance(
        db, holders, maker, checker, auth.authenticate("verifier_wang", DEMO_PASSWORD), rng
    )

    with db.uow() as uow:
        store.set_flag(uow.conn, SEEDED_FLAG, "1")
        uow.commit()
    return {"seeded": True, "logins": logins()}


# The power plants of the two demo compliance years (2021 and 2022, whose rules and benchmarks
# are all verified): by enterprise index, their units (code, category, MW, cooling, heat supply)
# and their coal intensity in tCO2 per MWh supplied. 大唐黄石 (2) runs old air-cooled units above
# the benchmark and buys nothing in 2021: the demo's entity in deficit, penalised, its shortfall
# deducted from its 2022 allocation; in 2022 it buys what it lacks and complies.
PLANTS: dict[int, tuple[list[tuple[str, str, str, str, bool]], str]] = {
    0: ([("#1", "I", "660", "water", False), ("#2", "I", "660", "water", False)], "0.805"),
    1: ([("#1", "I", "600", "water", False), ("#2", "I", "600", "water", False)], "0.835"),
    2: ([("#1", "I", "330", "air", False), ("#2", "II", "300", "air", False)], "0.905"),
    3: ([("#1", "I", "660", "water", False), ("#2", "I", "660", "water", False)], "0.815"),
    4: ([("#1", "I", "1000", "water", False)], "0.800"),
    5: ([("#1", "II", "300", "water", True), ("#2", "II", "300", "water", True)], "0.860"),
    18: ([("#1", "II", "350", "water", True)], "0.850"),
}
COMPLIANCE_YEARS = (2021, 2022)
DEFICIT_ENTITY = 2


def _plant_rows(
    entity_id: str,
    allocation: int,
    plant: tuple[list[tuple[str, str, str, str, bool]], str],
    y: int,
    rng: random.Random,
) -> list[dict[str, Any]]:
    """A year of one plant's monthly evidence, as import rows: supply near what its allocation
    figure suggests, generation 6 % above it, heat for the CHP units, and the coal (measured NCV
    and element carbon) that makes the plant's intensity."""
    units, intensity = plant
    per_month = Decimal(allocation) / Decimal("0.82") / len(units) / 12
    rows: list[dict[str, Any]] = []
    for month in range(1, 13):
        coal_t = Decimal(0)
        for code, _cat, _mw, _cool, heat in units:
            supply = (per_month * Decimal(rng.uniform(0.9, 1.1))).quantize(Decimal(1))
            rows.append(_row(entity_id, code, month, "supply", supply))
            rows.append(
                _row(
                    entity_id,
                    code,
                    month,
                    "generation",
                    (supply * Decimal("1.06")).quantize(Decimal(1)),
                )
            )
            co2 = supply * Decimal(intensity)
            if heat:
                gj = (supply * Decimal("1.2")).quantize(Decimal(1))
                rows.append(_row(entity_id, code, month, "heat", gj, heat_ratio="0.25"))
                co2 += gj * Decimal("0.115")
            coal_t += co2 / Decimal("1.99650")  # t of coal at 0.55 tC/t, 99 % oxidised
        rows.append(
            _row(
                entity_id,
                "",
                month,
                "fuel",
                coal_t.quantize(Decimal(1)),
                item="bituminous_coal",
                ncv="20.900",
                element_carbon="0.5500",
            )
        )
    return rows


def _row(
    entity: str, unit: str, month: int, kind: str, quantity: Decimal, item: str = "", **params: str
) -> dict[str, Any]:
    return {
        "entity": entity,
        "unit": unit,
        "month": month,
        "kind": kind,
        "item": item,
        "quantity": str(quantity),
        **params,
    }


def seed_compliance(
    db: Database,
    holders: list[tuple[str, Any, str, int]],
    operator: Any,
    checker: Any,
    verifier: Any,
    rng: random.Random,
) -> None:
    """Two whole compliance years of the power plants, through the compliance service: covered
    from 2021, their evidence imported, each year's cycle run by its parties, the entities short
    of allowances buying from those with a surplus, and the entity in deficit penalised."""
    registry = RegistryService(db)
    compliance = ComplianceService(db, registry)
    key = new_id
    plants = {i: holders[i] for i in PLANTS}
    for i, (account, who, _sector, _alloc) in plants.items():
        compliance.cover_entity(
            operator,
            key(),
            entity_id=who.entity_id,
            account_id=account,
            sector="power",
            region="湖北",
            since=min(COMPLIANCE_YEARS),
        )
        fac = compliance.add_facility(
            who,
            key(),
            entity_id=who.entity_id,
            name=f"{ENTERPRISES[i][0].removesuffix('有限责任公司').removesuffix('有限公司')} 厂区",
        )
        for code, cat, mw, cooling, heat in PLANTS[i][0]:
            compliance.add_unit(
                who,
                key(),
                facility_id=fac["id"],
                code=code,
                category=cat,
                capacity_mw=mw,
                cooling=cooling,
                fuel="coal",
                heat_supply=heat,
            )
    for y in (
        min(COMPLIANCE_YEARS) - 1,
        *COMPLIANCE_YEARS,
    ):  # the year before: pre-allocation's basis
        rows = [
            r
            for i, (_a, who, _s, alloc) in plants.items()
            for r in _plant_rows(who.entity_id, alloc, PLANTS[i], y, rng)
        ]
        got = compliance.import_evidence(operator, key(), year_=y, rows=rows)
        assert not got["rejected"], got["rejected"][:3]
    cast = Cast(
        operator, checker, verifier, {who.entity_id: who for _a, who, _s, _al in plants.values()}
    )
    deficit = holders[DEFICIT_ENTITY][1].entity_id
    for y in COMPLIANCE_YEARS:
        unit_class = f"CEA-{y}"
        t = registry.issue(
            operator, key(), unit_class=unit_class, quantity=60_000_000, reason=f"{y} 年度配额"
        )
        registry.approve(checker, key(), t["id"])
        run_cycle(compliance, cast, y, verified=lambda r: int(r["emissions"]) * 995 // 1000)
        # the market between entities: the short buy what they lack from those with a surplus
        # (in 2021 the entity in deficit does not), then surrender the rest
        standing = compliance.status(operator, y)["entities"]
        short = [
            e
            for e in standing
            if e["shortfall"] and not (y == COMPLIANCE_YEARS[0] and e["entity_id"] == deficit)
        ]
        spare = {e["entity_id"]: e for e in standing if not e["shortfall"]}
        for e in short:
            need = int(e["shortfall"])
            for s_id, s in spare.items():
                seller = cast.enterprises[s_id]
                have = _available(registry, seller, s["account_id"], unit_class)
                q = min(need, have)
                if q <= 0:
                    continue
                registry.transfer(
                    seller,
                    key(),
                    from_account=s["account_id"],
                    to_account=e["account_id"],
                    unit_class=unit_class,
                    quantity=q,
                    reason="履约缺口协议转让",
                )
                need -= q
                if need == 0:
                    break
        run_cycle(compliance, cast, y)
        compliance.penalties(operator, key(), year_=y, multiple="5", fine="25000.00")


def _available(registry: RegistryService, actor: Any, account: str, unit_class: str) -> int:
    for h in registry.account(actor, account)["holdings"]:
        if h["unit_class"] == unit_class:
            return int(h["available"])
    return 0


HISTORY_DAYS = 91  # calendar days of trading history before today
HOLIDAYS_2026 = [
    ("2026-10-01", "国庆节"),
    ("2026-10-02", "国庆节"),
    ("2026-10-05", "国庆节"),
    ("2026-10-06", "国庆节"),
    ("2026-10-07", "国庆节"),
]


class _SimulatedClock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def at(self, day: date, hhmm: str) -> None:
        h, m = map(int, hhmm.split(":"))
        local = datetime(day.year, day.month, day.day, h, m, tzinfo=SHANGHAI)
        self.now = local.astimezone(UTC)


def seed_market(
    db: Database,
    holders: list[tuple[str, Any, str, int]],
    operator: Any,
    bank: Any,
    rng: random.Random,
) -> None:
    """Members, cash and months of trading, each command through the services as it would come
    from a member, on a simulated clock; every past day settled."""
    registry, cash = RegistryService(db), CashService(db)
    exchange = ExchangeService(db, registry, cash)
    settlement = SettlementService(db, registry, cash, exchange)
    key = new_id
    real_clock: Callable[[], datetime] = db.clock
    clock = _SimulatedClock()
    today = datetime.now(SHANGHAI).date()
    start = today - timedelta(days=HISTORY_DAYS)
    clock.at(start, "08:00")
    db.clock = clock
    try:
        for closed, name in HOLIDAYS_2026:
            if start.isoformat() <= closed <= today.isoformat():
                exchange.add_holiday(operator, key(), day=closed, name=name)
        traders = []
        for account, who, _sector, _alloc in holders:
            exchange.admit_member(operator, key(), entity_id=who.entity_id, account_id=account)
            ca = cash.open_account(bank, key(), entity_id=who.entity_id)
            cash.fund(bank, key(), account_id=ca["id"], amount="200000000.00")
            traders.append(who)
        sellers = [h[1] for h in holders if h[3] >= 1_500_000]
        for code, unit_class, price, preset, name in (
            ("CEA2023", "CEA-2023", "72.50", "national", "全国碳排放配额 2023"),
            ("CEA2024", "CEA-2024", "74.80", "national", "全国碳排放配额 2024"),
            ("HBEA2024", "CEA-2024", "74.80", "hubei", "湖北协商议价 配额 2024"),
        ):
            exchange.create_instrument(
                operator,
                key(),
                code=code,
                unit_class=unit_class,
                name=name,
                reference_price=price,
                preset=preset,
            )
        day = start
        n = 0
        while day < today:
            day += timedelta(days=1)
            if day.weekday() >= 5 or day.isoformat() in {d for d, _ in HOLIDAYS_2026}:
                continue
            n += 1
            _trade_one_day(exchange, clock, day, n, traders, sellers, rng)
            clock.at(day, "15:30")
            settlement.settle_day(operator, day)
    finally:
        db.clock = real_clock


def _price(exchange: ExchangeService, code: str, mode: str, rng: random.Random, drift: int) -> int:
    """A price near the previous close, inside the band, in fen."""
    inst = exchange.instrument(code)
    low, high = (int(x.replace(".", "")) for x in inst["bands"][mode])
    prev = int(inst["prev_close"].replace(".", ""))
    return max(low, min(high, prev + drift + rng.randint(-60, 60)))


def _yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def _trade_one_day(
    exchange: ExchangeService,
    clock: _SimulatedClock,
    day: date,
    n: int,
    traders: list[Any],
    sellers: list[Any],
    rng: random.Random,
) -> None:
    key = new_id
    drift = rng.choice((-40, -20, 0, 10, 20, 30))  # the day's mood, in fen
    # Listing (挂牌协议): sellers list through the morning, buyers take among the best five.
    for code in ("CEA2024", "CEA2023"):
        clock.at(day, "09:35")
        listed = []
        for _ in range(4 if code == "CEA2024" else 2):
            who = rng.choice(sellers)
            p = _price(exchange, code, "LISTING", rng, drift)
            o = exchange.place_order(
                who,
                key(),
                instrument=code,
                mode="LISTING",
                side="S",
                price=_yuan(p),
                quantity=rng.randrange(2_000, 30_000, 100),
            )
            listed.append(o)
        clock.at(day, "10:40")
        for o in listed[: 3 if code == "CEA2024" else 1]:
            buyer = rng.choice([t for t in traders if t.entity_id != o["entity_id"]])
            exchange.take(buyer, key(), order_id=o["id"], quantity=min(o["open"], 8_000))
    # Continuous (Hubei 协商议价): resting offers, then bids that cross them.
    clock.at(day, "13:10")
    for _ in range(5):
        seller = rng.choice(sellers)
        buyer = rng.choice([t for t in traders if t.entity_id != seller.entity_id])
        p = _price(exchange, "HBEA2024", "CONTINUOUS", rng, drift)
        qty = rng.randrange(500, 6_000, 100)
        exchange.place_order(
            seller,
            key(),
            instrument="HBEA2024",
            mode="CONTINUOUS",
            side="S",
            price=_yuan(p),
            quantity=qty,
        )
        exchange.place_order(
            buyer,
            key(),
            instrument="HBEA2024",
            mode="CONTINUOUS",
            side="B",
            price=_yuan(p + rng.randint(0, 30)),
            quantity=rng.randrange(300, qty + 1, 100),
            tif="IOC",
        )
    # Block (大宗协议) once a week: quote, counter, both confirm.
    if n % 5 == 0:
        clock.at(day, "14:00")
        seller = rng.choice(sellers)
        buyer = rng.choice([t for t in traders if t.entity_id != seller.entity_id])
        p = _price(exchange, "CEA2024", "BLOCK", rng, drift - 50)
        deal = exchange.quote(
            seller, key(), instrument="CEA2024", side="S", price=_yuan(p), quantity=200_000
        )
        deal = exchange.counter(buyer, key(), deal["id"], price=_yuan(p - 40), quantity=150_000)
        exchange.confirm(buyer, key(), deal["id"], version=deal["version"])
        exchange.confirm(seller, key(), deal["id"], version=deal["version"])
    # A one-sided auction every other week: a seller announces, members bid, it allocates.
    if n % 10 == 3:
        clock.at(day, "10:00")
        seller = rng.choice(sellers)
        p = _price(exchange, "CEA2023", "AUCTION", rng, -80)
        opens = iso(clock.now)
        clock.at(day, "11:00")
        closes = iso(clock.now)
        clock.at(day, "10:05")
        auction = exchange.announce(
            seller,
            key(),
            instrument="CEA2023",
            side="S",
            quantity=50_000,
            reserve_price=_yuan(p),
            opens_at=opens,
            closes_at=closes,
        )
        for bidder in rng.sample([t for t in traders if t.entity_id != seller.entity_id], 5):
            exchange.bid(
                bidder,
                key(),
                auction["id"],
                price=_yuan(p + rng.randint(0, 120)),
                quantity=rng.randrange(5_000, 25_000, 1_000),
            )
        clock.at(day, "11:05")
        exchange.finish_due_auctions()


def logins() -> list[dict[str, str]]:
    return [
        {"username": "op_zhang", "password": DEMO_PASSWORD, "role": "operator (maker)"},
        {"username": "op_li", "password": DEMO_PASSWORD, "role": "operator (checker)"},
        {"username": "ent01", "password": DEMO_PASSWORD, "role": "enterprise: 华能武汉发电"},
        {"username": "ent07", "password": DEMO_PASSWORD, "role": "enterprise: 武汉钢铁"},
        {"username": "bank_hankou", "password": DEMO_PASSWORD, "role": "lender: 汉口银行"},
        {
            "username": "bank_clearing",
            "password": DEMO_PASSWORD,
            "role": "settlement bank: 汉口银行",
        },
        {
            "username": "verifier_wang",
            "password": DEMO_PASSWORD,
            "role": "verifier: 中环联合认证中心",
        },
    ]
