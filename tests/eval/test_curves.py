"""Threshold curves, AUC, threshold picking (hand-computed examples and a brute-force check), and
the fast-mode evaluation path: scores in predictions files, the ``threshold`` command, the PNG."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guardrail import Guard
from guardrail.eval import load_benchmark, read_predictions, run_benchmarks, score_sets
from guardrail.eval.cli import main
from guardrail.eval.metrics import (
    Outcomes,
    average_precision,
    pick_threshold,
    roc_auc,
    threshold_curve,
)
from guardrail.eval.predictions import discover
from guardrail.testing import FakeBackend

# 3 positives (0.9, 0.7, 0.4), 3 negatives (0.8, 0.4, 0.2); one tie across classes at 0.4
LABELS = [True, False, True, True, False, False]
SCORES = [0.9, 0.8, 0.7, 0.4, 0.4, 0.2]
EXAMPLE = Outcomes(LABELS, SCORES)


def test_curve_points_by_hand():
    points = threshold_curve(EXAMPLE).points
    assert [(p.threshold, p.tp, p.fp, p.fn, p.tn) for p in points] == [
        (math.inf, 0, 0, 3, 3), (0.9, 1, 0, 2, 3), (0.8, 1, 1, 2, 2), (0.7, 2, 1, 1, 2),
        (0.4, 3, 2, 0, 1), (0.2, 3, 3, 0, 0),
    ]  # fmt: skip
    curve = threshold_curve(EXAMPLE)
    assert curve.roc()[0] == (0.0, 0.0) and curve.roc()[-1] == (1.0, 1.0)
    assert curve.pr()[1] == (pytest.approx(1 / 3), 1.0) and curve.pr()[4] == (1.0, 0.6)


def test_auc_and_average_precision_by_hand():
    # pairs (pos, neg): 9 in all; ordered right: 0.9>all 3, 0.7>0.4,0.2, 0.4>0.2, 0.4=0.4 counts 1/2
    assert roc_auc(EXAMPLE) == pytest.approx((3 + 2 + 1 + 0.5) / 9)
    # recall steps: 1/3 at precision 1, 1/3 at 2/3, 1/3 at 3/5
    assert average_precision(EXAMPLE) == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    assert roc_auc(Outcomes([True, True], [0.1, 0.2])) is None  # no negatives
    assert average_precision(Outcomes([False], [0.3])) is None
    assert roc_auc(Outcomes([True, False, True], [0.9, None, 0.1])) is None  # unscored samples left out


@pytest.mark.parametrize(("target", "threshold", "tpr", "fpr"), [
    (0.0, 0.9, 1 / 3, 0.0),       # no false positive allowed
    (1 / 3, 0.7, 2 / 3, 1 / 3),   # one of three negatives
    (0.5, 0.7, 2 / 3, 1 / 3),     # 0.4 would flag two negatives (2/3 > 0.5)
    (2 / 3, 0.4, 1.0, 2 / 3),
    (1.0, 0.4, 1.0, 2 / 3),       # full recall already at 0.4: the lower 0.2 only adds false positives
])  # fmt: skip
def test_pick_threshold_by_hand(target, threshold, tpr, fpr):
    choice = pick_threshold(EXAMPLE, target)
    assert (
        choice.threshold == threshold
        and choice.tpr == pytest.approx(tpr)
        and choice.fpr == pytest.approx(fpr)
    )
    # the guard's rule (flag when score >= threshold) gives exactly these rates on the samples
    flagged = [s >= choice.threshold for s in SCORES]
    assert sum(f and y for f, y in zip(flagged, LABELS, strict=True)) == choice.tp
    assert sum(f and not y for f, y in zip(flagged, LABELS, strict=True)) == choice.fp


def test_pick_threshold_when_no_score_meets_the_target():
    choice = pick_threshold(Outcomes([False, True], [0.6, 0.3]), 0.0)
    assert choice.tpr == 0.0 and choice.fpr == 0.0 and 0.6 < choice.threshold <= 1.0  # flag nothing
    assert pick_threshold(Outcomes([False, True], [1.0, 0.3]), 0.0).threshold is None
    with pytest.raises(ValueError):
        pick_threshold(EXAMPLE, 1.5)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0])), min_size=1,
                max_size=30))  # fmt: skip
def test_auc_equals_the_pairwise_probability(pairs):
    o = Outcomes([y for y, _ in pairs], [s for _, s in pairs])
    pos = [s for y, s in pairs if y]
    neg = [s for y, s in pairs if not y]
    if not pos or not neg:
        assert roc_auc(o) is None
        return
    right = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    assert roc_auc(o) == pytest.approx(right / (len(pos) * len(neg)))
    for target in (0.0, 0.2, 0.5, 1.0):
        c = pick_threshold(o, target)
        assert c.fpr <= target + 1e-12
        # no threshold does better: brute force over every score (and "flag nothing")
        best = max([0.0] + [sum(p >= t for p in pos) / len(pos) for t in set(pos + neg)
                            if sum(n >= t for n in neg) / len(neg) <= target + 1e-12])  # fmt: skip
        assert c.tpr == pytest.approx(best)


@pytest.fixture
def fast_predictions(tmp_path):
    data = tmp_path / "mine.jsonl"
    rows = [{"id": str(i), "prompt": f"{'bad' if i % 2 else 'fine'} request {i}",
             "labels": {"request": "harmful" if i % 2 else "unharmful"}} for i in range(10)]  # fmt: skip
    rows.append({"id": "r", "prompt": "q", "response": "a bad answer",
                 "labels": {"request": "unharmful", "response": "harmful"}})  # fmt: skip
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))

    def score(request):  # harmful requests score high, with one negative scored above a positive
        user = request.prompt.text.split("Human user:\n")[1].split("\n\nAI assistant:")[0]
        if user == "fine request 8":
            return 0.85
        if user == "bad request 9":
            return 0.8
        return {"request": 0.9 if "bad" in user else 0.1, "response": 0.7}

    guard = Guard(FakeBackend(score_fn=score), mode="fast")
    out = tmp_path / "out"
    run_benchmarks(guard, [load_benchmark(str(data))], out, batch_size=4)
    return out


def test_predictions_carry_per_task_scores_and_reports_show_auc(fast_predictions):
    (path,) = discover(fast_predictions)
    rows = read_predictions(path).rows
    last = rows[-1]
    assert last.scores["request"] == pytest.approx(0.1) and last.scores["response"] == pytest.approx(0.7)
    assert last.score == pytest.approx(0.7) and last.task_score("request") == pytest.approx(0.1)
    assert rows[0].predicted["request"] == "unharmful" and rows[1].predicted["request"] == "harmful"
    report = score_sets([read_predictions(path)])
    request = report.get("mine", "request")
    # positives: four at 0.9, one at 0.8; negatives: five at 0.1, one at 0.85 (29 of 30 pairs right)
    assert request.extra["roc_auc"] == pytest.approx(29 / 30)
    assert request.extra["average_precision"] == pytest.approx(0.8 * 1 + 0.2 * 5 / 6)
    assert report.get("mine", "response").extra == {"roc_auc": None, "average_precision": 1.0}


def test_threshold_command(fast_predictions, tmp_path, capsys):
    png = tmp_path / "curves.png"
    assert (
        main(["threshold", "--predictions", str(fast_predictions), "--target-fpr", "0.0", "--plot", str(png)])
        == 0
    )
    out = capsys.readouterr().out
    assert "| mine | 11 |" in out and "| 0.900000 | 0.8000 | 0.0000 |" in out  # no false positive: recall 4/5
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["threshold", "--predictions", str(fast_predictions), "--target-fpr", "0.2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)["results"][0]
    assert result["threshold"] == 0.8 and result["tpr"] == 1.0 and result["fp"] == 1  # 1/6 <= 0.2
    assert main(["threshold", "--predictions", str(fast_predictions), "--target-fpr", "2"]) == 2


def test_threshold_command_needs_scores(tmp_path, capsys):
    data = tmp_path / "mine.jsonl"
    data.write_text(json.dumps({"id": "1", "prompt": "x", "labels": {"request": "harmful"}}) + "\n")
    run_benchmarks(
        Guard(FakeBackend()), [load_benchmark(str(data))], tmp_path / "out"
    )  # reasoning: no scores
    assert main(["threshold", "--predictions", str(tmp_path / "out"), "--target-fpr", "0.1"]) == 2
    assert "--mode fast" in capsys.readouterr().err
