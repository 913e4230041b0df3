"""`train --kind scorer` and `rerank` on the command line, and the candidates format."""

from __future__ import annotations

import json

import pytest
import torch

from cli_runner import run, user_error
from pft_adapters.errors import PFTError
from pft_adapters.mix import load_mixed
from pft_adapters.rerank import Candidate, read_candidates, rerank
from pft_adapters.scorer import ScorerModel
from pft_adapters.scorer import DEFAULT_MAX_LENGTH, DEFAULT_TARGETS

ANSWERS = [
    {"text": "Put it all on the new venture; fortune favours the bold.", "group": "q1"},
    {"text": "Keep the savings where they are and wait for a safer moment.", "group": "q1"},
    {"text": "Take the cash prize right now and enjoy it tonight.", "group": "q2", "context": "You won a prize."},
    {"text": "Let the prize grow in the fund for a bigger payout next year.", "group": "q2", "context": "You won a prize."},
]


@pytest.fixture(scope="module")
def cli_scorer(tmp_path_factory, encoder_dir, vcd_train):
    out = tmp_path_factory.mktemp("cli-scorer") / "zoo"
    from pft_adapters_cli.app import main

    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--kind", "scorer", "--base", str(encoder_dir), "--data", str(vcd_train), "--dims", "risk,time",
              "--limit", "16", "--epochs", "1", "--rank", "2", "--out", str(out)])
    assert exit_info.value.code in (0, None)
    return out


@pytest.fixture()
def answers(tmp_path):
    path = tmp_path / "answers.jsonl"
    path.write_text("\n".join(json.dumps(a) for a in ANSWERS) + "\n")
    return path


def test_train_scorer_through_the_cli_records_the_kind(cli_scorer, capsys):
    code, out, _ = run(capsys, "info", cli_scorer, "--json")
    info = json.loads(out)
    assert code == 0 and info["kind"] == "scorer"
    assert info["lora"]["target_modules"] == list(DEFAULT_TARGETS) and info["training"]["max_length"] == DEFAULT_MAX_LENGTH


def test_rerank_ranks_each_group_and_keeps_per_line_vectors(cli_scorer, answers, tmp_path, capsys):
    code, out, _ = run(capsys, "rerank", cli_scorer, "--vector", "risk=-1", "--candidates", answers, "--json")
    ranking = json.loads(out)["ranking"]
    assert code == 0 and sorted(r["index"] for r in ranking) == [0, 1, 2, 3]
    for group in ("q1", "q2"):
        rows = [r for r in ranking if r["group"] == group]
        assert [r["rank"] for r in rows] == [1, 2] and rows[0]["score"] >= rows[1]["score"]
    per_line = tmp_path / "per-line.jsonl"
    per_line.write_text("\n".join(json.dumps(a | {"vector": v}) for a, v in zip(ANSWERS, ["risk=1", "risk=-1", "time=1", "time=-1"])))
    code, out, _ = run(capsys, "rerank", cli_scorer, "--candidates", per_line, "--json", "--top", "1")
    ranking = json.loads(out)["ranking"]
    assert code == 0 and len(ranking) == 2 and {r["group"] for r in ranking} == {"q1", "q2"}
    assert ranking[0]["vector"] in ({"risk": 1.0}, {"risk": -1.0})


def test_each_line_scores_as_if_alone_and_text_output_heads_every_group(cli_scorer, tmp_path, capsys):
    lines = [a | {"vector": v} for a, v in zip(ANSWERS, ["risk=1", "risk=-1", "time=1", "time=-1"])]
    lines += [{"text": "Keep it simple.", "context": "", "vector": "risk=1"}, {"text": "Keep it simple.", "vector": "risk=1"}]
    path = tmp_path / "lines.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines))
    scorer = load_mixed(str(cli_scorer))
    together = {r.index: r.score for r in rerank(scorer, read_candidates(path))[0]}
    for i, line in enumerate(lines):
        path.write_text(json.dumps(line))
        assert rerank(scorer, read_candidates(path))[0][0].score == pytest.approx(together[i], abs=1e-5), i
    assert together[4] == pytest.approx(together[5], abs=1e-6)  # an empty context is no context
    path.write_text("\n".join(json.dumps(x) for x in lines))
    code, out, _ = run(capsys, "rerank", cli_scorer, "--candidates", path)
    assert code == 0 and [x for x in out.splitlines() if x.startswith("[")] == ["[q1]", "[q2]", "[(no group)]"]


def test_equal_scores_share_a_rank(cli_scorer, tmp_path, capsys):
    path = tmp_path / "ties.jsonl"
    path.write_text("\n".join(json.dumps(t) for t in ["Take the safe job.", "Bet it all.", "Take the safe job."]))
    ranked = rerank(load_mixed(str(cli_scorer)), read_candidates(path), "risk=-1")[0]
    ranks = {r.index: r.rank for r in ranked}
    assert ranks[0] == ranks[2] and sorted(ranks.values()) in ([1, 1, 3], [1, 2, 2])  # the same text, the same score
    code, out, _ = run(capsys, "rerank", cli_scorer, "--vector", "risk=-1", "--candidates", path, "--json", "--top", "1")
    assert code == 0 and len(json.loads(out)["ranking"]) == (2 if ranks[0] == 1 else 1)


def test_rerank_user_errors_are_one_line(cli_scorer, zoo_dir, answers, tmp_path, capsys, monkeypatch):
    assert f"{answers}, line 1 has no vector" in user_error(capsys, "rerank", cli_scorer, "--candidates", answers)
    with monkeypatch.context() as patch:  # an LLM zoo is refused before its base loads
        patch.setattr("pft_adapters.zoo.Zoo.load_base", lambda *a, **k: pytest.fail("the base was loaded"))
        assert "is an LLM zoo: rerank needs a scorer zoo" in user_error(capsys, "rerank", zoo_dir, "--vector", "risk=1",
                                                                        "--candidates", answers)
    assert "riks" in user_error(capsys, "rerank", cli_scorer, "--vector", "riks=1", "--candidates", answers)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('"fine"\n{"txt": "typo"}\n')
    assert "line 2" in user_error(capsys, "rerank", cli_scorer, "--vector", "risk=1", "--candidates", bad)
    assert "does not write" in user_error(capsys, "mix", cli_scorer, "--vector", "risk=1", "--prompt", "Hello?")
    bad.write_text('"fine"\n{"text": "x", "vector": "risk=2"}\n')
    line = user_error(capsys, "rerank", cli_scorer, "--vector", "risk=1", "--candidates", bad)
    assert f"{bad}, line 2: field 'vector'" in line and "outside [-1, 1]" in line
    assert "--device 'gpu0' is not a device" in user_error(capsys, "rerank", cli_scorer, "--vector", "risk=1",
                                                            "--candidates", answers, "--device", "gpu0")
    assert "unknown --calibrate 'pmi'" in user_error(capsys, "mix", cli_scorer, "--vector", "risk=1", "--scenarios", bad,
                                                     "--calibrate", "pmi")


def test_rerank_and_mix_compose_by_dimensions_on_request(cli_scorer, answers, vcd_train, tmp_path, capsys):
    scorer = load_mixed(str(cli_scorer))
    both = "risk=-1,time=1"
    code, out, _ = run(capsys, "rerank", cli_scorer, "--vector", both, "--compose", "dimensions", "--candidates", answers, "--json")
    expected = rerank(scorer, read_candidates(answers), both, compose="dimensions")[0]
    assert code == 0 and [(r["index"], r["score"]) for r in json.loads(out)["ranking"]] == \
        [(r.index, round(r.score, 4)) for r in expected]
    assert "unknown --compose 'sum'" in user_error(capsys, "rerank", cli_scorer, "--vector", both, "--compose", "sum",
                                                     "--candidates", answers)
    assert "--compose goes with --scenarios" in user_error(capsys, "mix", cli_scorer, "--vector", both,
                                                                      "--compose", "dimensions", "--prompt", "Hello?")
    from pft_adapters.data import load_scenarios

    data = tmp_path / "risk.json"
    data.write_text(json.dumps([r for r in json.loads(vcd_train.read_text()) if r["preference domain"] == "Risk Orientation"][:3]))
    code, out, _ = run(capsys, "mix", cli_scorer, "--vector", both, "--compose", "dimensions", "--scenarios", data, "--json")
    result = json.loads(out)
    picks = scorer.choose(load_scenarios(data, scorer.zoo.space), both, compose="dimensions")
    assert code == 0 and result["composition"] == "dimensions"
    assert [c["scores"] for c in result["choices"]] == [c.rounded() for c in picks]


def test_mix_scenarios_on_a_scorer_zoo_chooses_by_the_mirror(cli_scorer, vcd_train, tmp_path, capsys):
    """`mix --scenarios` reads a scorer zoo as `eval` does: against the mirrored vector unless told otherwise."""
    from pft_adapters.data import load_scenarios
    from pft_adapters.mix import load_mixed

    risk = [r for r in json.loads(vcd_train.read_text()) if r["preference domain"] == "Risk Orientation"][:3]
    data = tmp_path / "risk.json"
    data.write_text(json.dumps(risk))
    scorer = load_mixed(str(cli_scorer))
    scenarios = load_scenarios(data, scorer.zoo.space)
    for calibrate in ("mirror", "none"):
        extra = () if calibrate == "mirror" else ("--calibrate", calibrate)
        code, out, _ = run(capsys, "mix", cli_scorer, "--vector", "risk=-1", "--scenarios", data, "--json", *extra)
        result = json.loads(out)
        expected = scorer.choose(scenarios, "risk=-1", calibrate=calibrate)
        assert code == 0 and result["calibrated"] == calibrate
        assert [c["scores"] for c in result["choices"]] == [c.rounded() for c in expected]
    code, out, _ = run(capsys, "mix", cli_scorer, "--vector", "risk=-1", "--scenarios", data)  # text: one line per pick
    expected = scorer.choose(scenarios, "risk=-1")
    picks = [line.split("-> ")[1] for line in out.splitlines() if "-> " in line]
    assert code == 0 and [p[0] for p in picks] == [chr(65 + c.index) for c in expected]  # "-> B. <option> [pole]"
    assert all(p.endswith(f"[{c.pole}]") for p, c in zip(picks, expected))


def test_candidates_file_is_checked_line_by_line(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('"plain text"\n\n{"text": "with context", "context": "ctx", "group": "g", "id": 7}\n')
    items = read_candidates(path)
    assert [c.text for c in items] == ["plain text", "with context"] and items[1].line == 3 and items[1].id == 7
    for line, message in (("{", "not valid JSON"), ("3", "expected a string"), ('{"text": ""}', "non-empty"),
                          ('{"text": "x", "vector": 3}', "vector"), ('{"text": "x", "group": 1}', "group"),
                          # `rerank --json` echoes the id: one that is no JSON, or not a plain id, is refused
                          ('{"text": "x", "id": NaN}', r"not valid JSON \(NaN is not a JSON number\)"),
                          ('{"text": "x", "id": -Infinity}', r"not valid JSON \(-Infinity is not a JSON number\)"),
                          ('{"text": "x", "id": true}', "field 'id' must be a string or an integer"),
                          ('{"text": "x", "id": [1]}', "field 'id' must be a string or an integer")):
        path.write_text(line + "\n")
        with pytest.raises(PFTError, match=message):
            read_candidates(path)
    path.write_text('"ok"\n{\n3\n')  # every bad line in one error
    with pytest.raises(PFTError, match=r"^2 bad record\(s\) in .*c.jsonl:\n  .*line 2: not valid JSON.*\n  .*line 3: expected a string"):
        read_candidates(path)
    path.write_text("\n")
    with pytest.raises(PFTError, match="no candidates"):
        read_candidates(path)


def test_a_blank_context_is_no_context_whatever_else_is_in_the_batch(cli_scorer):
    scorer = load_mixed(str(cli_scorer))
    assert isinstance(scorer, ScorerModel)
    alone = scorer.scores(["Keep it in the bank."], "risk=-1")
    for blank in ("", "   "):
        assert torch.equal(scorer.scores(["Keep it in the bank.", "Invest it."], "risk=-1", [blank, "What now?"])[:1], alone)


def test_rerank_from_python_checks_candidates_as_the_file_reader_does(cli_scorer):
    scorer = load_mixed(str(cli_scorer))
    ranked, vectors = rerank(scorer, [" Keep it in the bank. ", Candidate("Invest it.")], "risk=-1")
    assert sorted(r.candidate.text for r in ranked) == ["Invest it.", "Keep it in the bank."] and len(vectors) == 2
    assert rerank(scorer, [], "risk=1") == ([], [])  # as choose([]) picks nothing
    for bad, message in ((Candidate(None), r"candidates\[1\]: field 'text' must be a non-empty string"),  # type: ignore[arg-type]
                         (Candidate("x", vector=3), r"candidates\[1\]: field 'vector' must be a string"),  # type: ignore[arg-type]
                         ({"text": "x"}, r"candidates\[1\] is a dict: pass a Candidate or a candidate's text")):
        with pytest.raises(PFTError, match=f"^{message}"):
            rerank(scorer, ["fine", bad], "risk=1")  # type: ignore[list-item]
    with pytest.raises(PFTError, match=r"^candidates\[0\] has no vector: pass rerank a vector, or give every candidate its own$"):
        rerank(scorer, [Candidate("a")])
