"""`carbonhub demo`: a realistic demo market, built only through the services so the journal verifies.

Two registry operators, a verifier, a bank, twenty covered enterprises in Hubei across power,
steel, cement and aluminium, CEA for 2023 and 2024 allocated by maker–checker, a CCER project,
transfers, a pledge, a surrender and a voluntary cancellation.
"""

from __future__ import annotations

import random
from typing import Any

from carbonhub.core.auth import AuthService
from carbonhub.core.db import Database
from carbonhub.core.ids import new_id
from carbonhub.registry import store
from carbonhub.registry.service import RegistryService

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
    auth.create_user("verifier_wang", DEMO_PASSWORD, "verifier", display_name="王审核")
    maker = auth.authenticate("op_zhang", DEMO_PASSWORD)
    checker = auth.authenticate("op_li", DEMO_PASSWORD)

    bank = auth.create_entity(
        "汉口银行股份有限公司", "bank", _credit_code(rng), name_en="Hankou Bank", region="武汉"
    )
    auth.create_user(
        "bank_hankou", DEMO_PASSWORD, "lender", bank["id"], display_name="汉口银行 绿色金融部"
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

    with db.uow() as uow:
        store.set_flag(uow.conn, SEEDED_FLAG, "1")
        uow.commit()
    return {"seeded": True, "logins": logins()}


def logins() -> list[dict[str, str]]:
    return [
        {"username": "op_zhang", "password": DEMO_PASSWORD, "role": "operator (maker)"},
        {"username": "op_li", "password": DEMO_PASSWORD, "role": "operator (checker)"},
        {"username": "ent01", "password": DEMO_PASSWORD, "role": "enterprise: 华能武汉发电"},
        {"username": "ent07", "password": DEMO_PASSWORD, "role": "enterprise: 武汉钢铁"},
        {"username": "bank_hankou", "password": DEMO_PASSWORD, "role": "lender: 汉口银行"},
        {"username": "verifier_wang", "password": DEMO_PASSWORD, "role": "verifier"},
    ]
