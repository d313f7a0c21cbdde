"""The rule that spreads the ledger's shards over its live replicas (``services.ledger.shards``).

Pure: the slots a replica sees live, in order, decide its shards. Every shard has exactly one
replica among the live ones, the replicas' shares differ by at most one, and a replica whose slot
is not (or no longer) live claims nothing.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.ledger.shards import assignment


def test_two_replicas_split_four_shards_by_rank() -> None:
    assert assignment(0, [0, 1], 4) == {0, 2}
    assert assignment(1, [0, 1], 4) == {1, 3}


def test_rank_not_slot_number_decides() -> None:
    assert assignment(7, [3, 7], 4) == {1, 3}


def test_a_slot_not_live_claims_nothing() -> None:
    assert assignment(None, [0, 1], 4) is None
    assert assignment(2, [0, 1], 4) is None


def test_more_replicas_than_shards_leaves_some_idle() -> None:
    assert assignment(2, [0, 1, 2], 2) == set()


@given(
    live=st.lists(st.integers(0, 255), min_size=1, max_size=12, unique=True).map(sorted),
    shards=st.integers(1, 32),
)
def test_every_shard_has_exactly_one_live_replica(live: list[int], shards: int) -> None:
    shares = [assignment(slot, live, shards) for slot in live]
    owned = [k for share in shares for k in share or set()]
    assert sorted(owned) == list(range(shards))
    sizes = [len(share or set()) for share in shares]
    assert max(sizes) - min(sizes) <= 1
