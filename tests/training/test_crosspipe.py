import itertools

import numpy as np
import pytest

from syslab.core.errors import InputError
from syslab.training import pipeline as P
from syslab.training.crosspipe import milp as M
from syslab.training.crosspipe import schedule as S


def test_no_delay_matches_the_textbook_makespans():
    pp, m = 4, 8
    assert S.run("1F1B", pp, m, S.Delay()).makespan == pytest.approx(3 * m + 3 * (pp - 1))
    assert S.run("IV1F1B", pp, m, S.Delay()).makespan == pytest.approx(3 * m + 3 * (pp - 1) / 2)
    # UD with a B/W split and p micro-batches on every device: 3m + (p - 1), ZB-H1's bound
    assert S.run("CrossUD", pp, m, S.Delay()).makespan == pytest.approx(3 * m + pp - 1)


def test_zbv_is_the_papers_order_and_reaches_its_zero_bubble():
    pp, m = 4, 8
    sch = S.run("ZBV", pp, m, S.Delay())
    assert P.orders_of(sch) == P.orders_zb_v(pp, m)
    assert sch.makespan == pytest.approx(3 * m + (pp - 1) / 2)      # 3m of work, device r starts r/2 late
    assert P.validate(sch, memory_limit=S.memory_budget(pp)) == []
    # under a cross-DC latency it stays a static order: stretched, still valid within the same memory
    late = S.run("ZBV", pp, m, S.Delay(2.0, 0.0))
    assert P.orders_of(late) == P.orders_zb_v(pp, m) and late.makespan > sch.makespan
    assert P.validate(late, memory_limit=S.memory_budget(pp)) == []


def test_static_orders_stay_fixed_under_delay_and_the_greedy_adapts():
    d = S.Delay(2.0, 0.0)
    still = P.orders_of(S.run("ZBH1", 4, 8, d))
    assert still == P.orders_zb_h1(4, 8)
    assert S.run("CrossUD", 4, 8, d).makespan < S.run("ZBH1", 4, 8, d).makespan


def test_crossings_per_microbatch_follow_the_pattern():
    for pattern, crossings in (("UD", 2), ("Wave", 4), ("Loop", 6)):
        st = S.stages(4, 1, S.Delay(1.0, 0.5), pattern)
        sch = P.simulate(st, P.Greedy(4.0, phases=True))
        assert sum(1 for o in sch.ops.values() if (o.resource or "").startswith("link")) == crossings


def test_bad_delays_and_names_are_input_errors():
    with pytest.raises(InputError):
        S.Delay(-1.0, 0.0)
    with pytest.raises(InputError):
        S.run("Nope", 4, 8, S.Delay())
    with pytest.raises(InputError):
        S.stages(4, 8, S.Delay(), "Spiral")


def _brute_force(st: P.Stages, limit: float) -> float:
    """Shortest makespan over every per-device order that keeps micro-batch order within each kind."""
    per_device = []
    for d in range(st.devices):
        items = st.items(d)
        orders = set()
        for perm in itertools.permutations(items):
            ok = all([i for i in perm if i[0] == k and i[1] == v] == sorted(i for i in perm if i[0] == k and i[1] == v)
                     for k in "FBW" for v in range(st.virtual_stages))
            if ok:
                orders.add(perm)
        per_device.append(sorted(orders))
    best = np.inf
    for combo in itertools.product(*per_device):
        try:
            sch = P.simulate(st, {d: list(o) for d, o in enumerate(combo)})
        except InputError:
            continue
        if max(P.activation_peaks(sch).values()) <= limit + 1e-9:
            best = min(best, sch.makespan)
    return best


@pytest.mark.parametrize("delay, limit", [(S.Delay(1.0, 0.0), 2.0), (S.Delay(0.5, 1.0), 1.0), (S.Delay(0, 0), 2.0)])
def test_milp_equals_brute_force_on_a_tiny_instance(delay, limit):
    st = S.stages(2, 2, delay)
    sol = M.solve(st, limit, time_limit_s=20)
    assert sol.optimal
    assert sol.makespan == pytest.approx(_brute_force(st, limit), abs=1e-6)
    assert sol.schedule is not None and P.validate(sol.schedule, memory_limit=limit) == []
    assert sol.schedule.makespan <= sol.makespan + 1e-6


def test_milp_never_loses_to_the_greedy_and_respects_memory():
    for d in (S.Delay(2.0, 0.0), S.Delay(1.0, 1.0)):
        st = S.stages(4, 4, d)
        sol = M.solve(st, S.memory_budget(4), time_limit_s=20)
        greedy = S.run("CrossUD", 4, 4, d)
        assert sol.makespan <= greedy.makespan + 1e-6
        assert P.validate(sol.schedule, memory_limit=S.memory_budget(4)) == []


def test_operating_point_scales_with_distance_and_bandwidth():
    from syslab.training.crosspipe.reproduce import operating_point
    t_f, lat, bw = operating_point(1000, 100)
    _, lat2, bw2 = operating_point(2000, 50)
    assert 0.01 < t_f < 1.0 and lat2 == pytest.approx(2 * lat) and bw2 == pytest.approx(2 * bw)
