"""BlitzScale pieces (work in progress): multicast schedules and the scaling rule."""

import pytest

from syslab.core.errors import InputError
from syslab.core.hardware import link
from syslab.serving import blitzscale as B

S = 16e9


@pytest.mark.parametrize("n", [1, 2, 8, 16])
def test_chain_schedule_matches_its_closed_form(n):
    lk = link("nvlink4")
    sim = B.multicast_schedule(S, n, lk, "chain").makespan
    assert sim == pytest.approx(B.chain_time_s(S, n, lk), rel=0.01)


def test_chain_to_8_costs_about_one_transfer_and_a_star_8():
    lk = link("nvlink4")
    one = lk.transfer_s(S)
    assert B.multicast_schedule(S, 8, lk, "chain").makespan / one == pytest.approx(1 + 7 / 32, rel=0.01)
    assert B.multicast_schedule(S, 8, lk, "star").makespan / one == pytest.approx(8, rel=0.01)
    tree = B.multicast_schedule(S, 8, lk, "tree").makespan / one
    assert 1.22 < tree < 8
    with pytest.raises(InputError):
        B.multicast_schedule(S, 2, lk, "ring")


def test_scale_rule_goes_to_the_band_middle_and_down_one_at_a_time():
    busy = [B.Band(load=100_000, capacity=10_000, high=0.7, low=0.5)]     # needs 15..20 instances
    assert B.scale_target(2, busy, max_num=100) == 18
    assert B.scale_target(2, busy) == 14                                  # clamped to max_num
    idle = [B.Band(load=0, capacity=10_000, high=0.7, low=0.5)]
    assert B.scale_target(10, idle) == 9 and B.scale_target(2, idle) == 2  # one at a time, never below 2
    inside = [B.Band(load=30_000, capacity=10_000, high=0.7, low=0.5)]    # 5..6
    assert B.scale_target(5, inside) == 5 and B.scale_target(6, inside) == 6
