from carbonhub.verify import verify
from tests.conftest import World


def test_world_verifies(world: World) -> None:
    assert world.reg.account(world.alice, world.a)["holdings"][0]["posted"] == 500_000
    assert verify(world.db).ok
