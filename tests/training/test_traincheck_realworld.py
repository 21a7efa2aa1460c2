"""TrainCheck: disjunctive preconditions (exact against brute force, backward-compatible files, readable text),
calls that vanish from a run break their sequence invariants, and the paper's real-world bugs replayed as
miniature programs."""

import itertools
import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syslab.training.traincheck import relations as R


def _ex(ok, **props):
    return R.Example(("k",), ok, props, 0, 0, "x")


# --- disjunctive preconditions --------------------------------------------------------------------------------


def _frozen_or_first():
    """An invariant that holds on frozen parameters and in the first iteration, and nowhere else."""
    pos = [_ex(True, first_iter=False, **{"var.requires_grad": False}, lr=lr) for lr in (1, 2)] + \
          [_ex(True, first_iter=True, **{"var.requires_grad": True}, lr=lr) for lr in (1, 2)]
    neg = [_ex(False, first_iter=False, **{"var.requires_grad": True}, lr=lr) for lr in (1, 2)]
    return pos, neg


def test_a_disjunction_separates_what_no_conjunction_can():
    pos, neg = _frozen_or_first()
    assert _greedy_conjunction(pos, neg) is None                  # the old search finds nothing
    pre = R.precondition(pos, neg)
    assert pre == [[("first_iter", True)], [("var.requires_grad", False)]]
    inv = R.Invariant(("keeps", "Optimizer.step", "value"), pre, len(pos), len(neg))
    assert inv.disjunctive and inv.text.endswith("when first_iter = True or var.requires_grad = False")
    assert all(inv.applies(e.props) for e in pos) and not any(inv.applies(e.props) for e in neg)
    assert R.precondition(pos, neg, max_depth=0) is None         # a split is the recursion's first level


def test_a_conjunction_inside_a_disjunction_is_parenthesised():
    pre = [[("a", 1), ("b", 2)], [("c", 3)]]
    assert R.precondition_text(pre) == "(a = 1 and b = 2) or c = 3"
    assert R.precondition_text([[("a", 1)]]) == "a = 1" and R.precondition_text([[]]) == ""


def test_a_split_needs_two_positives_per_conjunction():
    # each positive is told apart from the negatives only by a value of its own (an input fingerprint, say):
    # a disjunction of singletons would only list the reference runs, so there is no precondition
    pos = [_ex(True, input=f"h{i}", first_iter=False) for i in range(3)]
    neg = [_ex(False, input="other", first_iter=False)]
    assert R.precondition(pos, neg) is None


def _greedy_conjunction(positives, negatives):
    """The precondition search before disjunctions (greedy set cover over the clauses common to all positives),
    kept here as the reference for "a case a conjunction solves is solved as before"."""
    if not negatives:
        return [[]]
    common = set.intersection(*({(k, v) for k, v in e.props.items()} for e in positives))
    remaining, chosen = negatives, []
    while remaining:
        scored = [(sum(n.props.get(k) != v for n in remaining), k, v) for k, v in common]
        scored = [s for s in scored if s[0] > 0]
        if not scored:
            return None
        _, k, v = max(scored, key=lambda s: (s[0], -len(s[1]), str(s[1])))
        chosen.append((k, v))
        remaining = [n for n in remaining if n.props.get(k) == v]
    return [sorted(chosen, key=lambda c: str(c[0]))]


def _brute_force_exists(positives, negatives, min_support=R.MIN_POSITIVES):
    """Whether some disjunction of conjunctions, each met by at least ``min_support`` positives and by no
    negative, covers every positive: every conjunction over the clause vocabulary is tried."""
    if not negatives:
        return True
    vocabulary = sorted({(k, v) for e in positives for k, v in e.props.items()}, key=str)
    covered = set()
    for n in range(len(vocabulary) + 1):
        for conj in itertools.combinations(vocabulary, n):
            if any(R.meets(e.props, list(conj)) for e in negatives):
                continue
            support = {i for i, e in enumerate(positives) if R.meets(e.props, list(conj))}
            if len(support) >= min_support:
                covered |= support
    return len(covered) == len(positives)


props = st.fixed_dictionaries({}, optional={"a": st.integers(0, 2), "b": st.integers(0, 1), "c": st.booleans(),
                                            "d": st.integers(0, 1)})


@settings(max_examples=300, deadline=None)
@given(st.lists(props, min_size=2, max_size=7), st.lists(props, max_size=6))
def test_precondition_agrees_with_brute_force_on_small_property_sets(pos_props, neg_props):
    pos = [_ex(True, **p) for p in pos_props]
    neg = [_ex(False, **p) for p in neg_props]
    pre = R.precondition(pos, neg)
    assert (pre is not None) == _brute_force_exists(pos, neg)
    if pre is None:
        assert _greedy_conjunction(pos, neg) is None
        return
    assert all(any(R.meets(e.props, c) for c in pre) for e in pos)          # covers every positive
    assert not any(R.meets(e.props, c) for e in neg for c in pre)            # and no negative
    assert not any(set(a) < set(b) for a in pre for b in pre)                # none implied by another
    old = _greedy_conjunction(pos, neg)
    if old is not None:                                                      # where a conjunction does
        assert pre == old                                                    # the result is as before


def test_invariants_files_keep_single_conjunctions_in_the_old_form_and_read_both(tmp_path):
    pos, neg = _frozen_or_first()
    disj = R.Invariant(("keeps", "Optimizer.step", "value"), R.precondition(pos, neg), 4, 2)
    conj = R.Invariant(("changes", "Optimizer.step", "value"), [[("var.has_grad", True)]], 5, 3)
    always = R.Invariant(("cover", "Optimizer.zero_grad", "Tensor.backward"), [[]], 5, 0)
    path = tmp_path / "inv.json"
    R.save([disj, conj, always], path, ["ref"])
    written = json.loads(path.read_text())["invariants"]
    assert written[0]["precondition"] == {"any": [[["first_iter", True]], [["var.requires_grad", False]]]}
    assert written[1]["precondition"] == [["var.has_grad", True]] and written[2]["precondition"] == []
    back = R.load(path)
    assert [i.precondition for i in back] == [disj.precondition, conj.precondition, always.precondition]
    old = {"format": "syslab-traincheck-invariants/1", "references": [], "apis": [], "invariants": [
        {"relation": "changes", "key": ["changes", "Optimizer.step", "value"],
         "precondition": [["var.has_grad", True]], "positives": 5, "negatives": 3, "text": "..."}]}
    path.write_text(json.dumps(old))                                          # a file from before disjunctions
    assert R.load(path)[0].precondition == [[("var.has_grad", True)]]
    for bad in ({"any": []}, {"any": [["a", 1]]}, {"all": [[["a", 1]]]}, [["a"]]):
        old["invariants"][0]["precondition"] = bad
        path.write_text(json.dumps(old))
        with pytest.raises(R.InputError, match="precondition"):
            R.load(path)


def test_show_prints_a_disjunction_one_conjunction_per_line(tmp_path, capsys):
    from syslab.cli import main

    pos, neg = _frozen_or_first()
    path = tmp_path / "inv.json"
    R.save([R.Invariant(("keeps", "Optimizer.step", "value"), R.precondition(pos, neg), 4, 2)], path, [])
    with pytest.raises(SystemExit) as e:
        main(["traincheck", "show", str(path)])
    out = capsys.readouterr().out
    # the table may wrap a clause, not the line a conjunction starts on
    assert e.value.code == 0 and "first_iter = True" in out and "or var.requires_grad" in out


# --- a call that never happens still breaks its sequence invariants --------------------------------------------


def _loop(iters, with_zero_grad=True):
    calls, seq = [], 0
    for it in range(iters):
        for name in ("Optimizer.zero_grad", "Module.forward", "Tensor.backward", "Optimizer.step"):
            if name == "Optimizer.zero_grad" and not with_zero_grad:
                continue
            seq += 1
            calls.append(R.Call(name, 0, it, seq, {}))
    run = R.Run(calls)
    R._mark_training_forwards(run.calls)
    return run


def test_an_api_missing_from_the_whole_run_is_a_violation_in_its_first_iteration():
    invs = R.infer([_loop(4), _loop(3)])
    assert R.check(_loop(5), invs) == []
    v = R.check(_loop(5, with_zero_grad=False), invs)
    assert v and min(x.iter for x in v) == 0
    assert any(x.invariant.key == ("cover", "Optimizer.zero_grad", "Tensor.backward") for x in v)


# --- the real-world bugs ---------------------------------------------------------------------------------------

ARTIFACT_IDS = {"pytorch-51800", "pytorch-84803", "pytorch-96600", "pytorch-104336", "pytorch-115607",
                "deepspeed-1801", "deepspeed-5794", "transformers-17877", "transformers-23723", "transformers-33844",
                "transformers-34204", "mmpretrain-702", "lightning-thunder-725", "baichuan2-86",
                "stackoverflow-60335387", "stackoverflow-67180955", "pytorch-forum-84911",
                "x-jxmnop-ddp-out-of-sync"}


def test_every_artifact_bug_is_replayed_or_has_a_reason():
    from syslab.training.traincheck import realworld as W

    replayed = [b for c in W.CASES for b in c.bugs]
    assert len(replayed) == len(set(replayed)) and not set(replayed) & set(W.NOT_REPLAYED)
    assert set(replayed) | set(W.NOT_REPLAYED) == ARTIFACT_IDS
    for c in W.CASES:                           # each program cites the issue it replays
        text = (W.PROGRAMS / c.script).read_text()
        assert all(re.search(re.escape(b.split("-")[-1]), text) for b in c.bugs) and "--bug" in text


torch = pytest.importorskip("torch")


def test_a_miniature_is_caught_at_its_trigger_with_no_alarm_on_its_clean_twin():
    from syslab.training.traincheck import realworld as W

    case = next(c for c in W.CASES if c.bugs == ("stackoverflow-67180955",))
    (r,) = W.replay((case,))
    assert r.invariants > 0 and r.clean_violations == []
    assert r.verdict == "caught" and r.violations[0].invariant.key[0] == "distinct_iters"


@pytest.mark.slow
def test_replaying_all_miniatures_raises_no_false_or_early_alarm():
    from syslab.training.traincheck import realworld as W

    replays = W.replay(W.CASES)
    assert all(r.clean_violations == [] for r in replays)
    assert not [r.case.bugs for r in replays if r.verdict == "early"]
    ids = [(b, r) for r in replays for b in r.case.bugs]
    assert sum(r.verdict == "caught" for _, r in ids) >= len(ids) / 2          # the reproduction's band
    # the data-parallel ones diverge across ranks at their trigger: the cross-rank invariant must see it
    ddp = [r for r in replays if r.case.ranks == 2 and r.verdict == "caught"]
    assert ddp and all(r.violations[0].invariant.key[0] == "ranks_equal" for r in ddp)
