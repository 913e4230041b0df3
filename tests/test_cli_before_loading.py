"""`infer`, `mix`, `eval` and `rerank` check every input against the zoo before its base model loads:
a typo must not cost a full load (for a Hub base, maybe a download of gigabytes)."""

from __future__ import annotations

import json
import shutil

import pytest

from cli_runner import user_error

BAD_DEVICE = "error: --device 'gpu0' is not a device: use auto, cpu, cuda or cuda:N"


@pytest.fixture(autouse=True)
def no_base(monkeypatch):
    monkeypatch.setattr("pft_adapters.zoo.Zoo.load_base", lambda *a, **k: pytest.fail("the base model was loaded"))


@pytest.fixture()
def bad(tmp_path):
    """Input files with one mistake each, and a good candidates file."""
    history = tmp_path / "history.jsonl"
    history.write_text('{"scenario": "s", "options": ["a"], "chosen": 0}\n')
    scenarios = tmp_path / "scenarios.json"
    scenarios.write_text("[{oops")
    candidates = tmp_path / "answers.jsonl"
    candidates.write_text('"Keep the savings."\n"Bet it all."\n')
    return {"history": history, "scenarios": scenarios, "candidates": candidates, "missing": tmp_path / "missing.json"}


def test_infer(zoo_dir, bad, capsys):
    assert f"{bad['history']}, line 1" in user_error(capsys, "infer", zoo_dir, "--history", bad["history"])
    assert user_error(capsys, "infer", zoo_dir, "--history", bad["history"], "--device", "gpu0") == BAD_DEVICE


def test_mix(zoo_dir, scorer_dir, bad, capsys):
    def mix(*args: object, zoo: object = zoo_dir) -> str:
        return user_error(capsys, "mix", zoo, *args)

    assert f"{bad['history']}, line 1" in mix("--history", bad["history"], "--prompt", "x")
    assert f"cannot read vector file {bad['missing']}: not found" in mix("--vector", f"@{bad['missing']}", "--prompt", "x")
    assert "did you mean 'risk'" in mix("--vector", "riks=1", "--export", bad["missing"].parent / "out")
    assert "['risk-averse'], which this zoo does not hold" in mix("--vector", "risk=-1", "--prompt", "x",
                                                                  zoo=f"{zoo_dir}:risk-taking,delayed-gratification")
    assert str(bad["scenarios"]) in mix("--vector", "risk=1", "--scenarios", bad["scenarios"])
    for job in (["--prompt", "x"], ["--export", bad["missing"].parent / "out"], ["--merge-out", bad["missing"].parent / "out"]):
        assert "a scorer zoo ranks texts, it does not write them" in mix("--vector", "risk=1", *job, zoo=scorer_dir)
    assert mix("--vector", "risk=1", "--prompt", "x", "--device", "gpu0") == BAD_DEVICE


def test_eval(zoo_dir, scorer_dir, bad, capsys):
    def evaluate(*args: object, zoo: object = zoo_dir) -> str:
        return user_error(capsys, "eval", zoo, *args)

    assert str(bad["scenarios"]) in evaluate("--data", bad["scenarios"], "--all-poles")
    assert f"cannot read pair definition file {bad['missing']}" in evaluate("--data", bad["scenarios"], "--all-poles",
                                                                            "--pairs", bad["missing"])
    good = bad["candidates"].with_name("dev.json")
    good.write_text(json.dumps([{"scenario": "s", "preference domain": "Risk Orientation",
                                 "options": [{"text": "a", "bias": "Risk-taking"}, {"text": "b", "bias": "Risk-averse"}]}]))
    assert "did you mean 'risk'" in evaluate("--data", good, "--vector", "riks=1")
    assert "open-ended answers need an LLM zoo" in evaluate("--data", good, "--all-poles", "--task", "open-ended", zoo=scorer_dir)
    assert evaluate("--data", good, "--all-poles", "--device", "gpu0") == BAD_DEVICE


def test_rerank(scorer_dir, bad, capsys):
    def rerank(*args: object, candidates: object = bad["candidates"]) -> str:
        return user_error(capsys, "rerank", scorer_dir, "--candidates", candidates, *args)

    assert f"{bad['history']}, line 1" in rerank("--history", bad["history"])
    assert f"{bad['candidates']}, line 1 has no vector" in rerank()
    own = bad["candidates"].with_name("own.jsonl")
    own.write_text('{"text": "Keep the savings.", "vector": "risk=-1"}\n{"text": "Bet it all.", "vector": "risk=2"}\n')
    line = rerank("--vector", "risk=1", candidates=own)
    assert f"{own}, line 2: field 'vector'" in line and "outside [-1, 1]" in line
    own.write_text('{"text": "Keep the savings.", "vector": "risk=-1"}\n')  # --vector is not used, but a typo is one
    assert "did you mean 'risk'" in rerank("--vector", "riks=1", candidates=own)
    assert rerank("--vector", "risk=1", "--device", "gpu0") == BAD_DEVICE


def test_json_output_writes_non_finite_numbers_as_null(capsys):
    """A zoo written by an older version may record NaN in its training summary: `info --json` stays valid JSON."""
    from pft_adapters_cli.commands.common import echo_json

    echo_json({"accuracy": float("nan"), "scores": [float("inf"), 0.5, (float("-inf"),)], "name": "z"})
    assert json.loads(capsys.readouterr().out) == {"accuracy": None, "scores": [None, 0.5, [None]], "name": "z"}


@pytest.mark.parametrize("command", ["info", "mix", "pull"])
def test_a_zoo_name_too_long_for_a_file_name_is_one_line(command, capsys):
    args = ["--vector", "risk=1", "--prompt", "x"] if command == "mix" else []
    line = user_error(capsys, command, "a" * 300, *args)  # the file system refuses the name (ENAMETOOLONG)
    assert "is neither a zoo folder nor a Hub name" in line


def test_mix_never_writes_over_or_into_what_it_reads(zoo_dir, tmp_path, capsys):
    history = tmp_path / "alice" / "history.jsonl"
    history.parent.mkdir()
    history.write_text("{}\n")
    line = user_error(capsys, "mix", zoo_dir, "--history", history, "--export", history.parent, "--overwrite")
    assert f"--export {history.parent} holds {history}, which this command reads" in line
    line = user_error(capsys, "mix", zoo_dir, "--vector", "risk=1", "--export", zoo_dir / "poles", "--overwrite")
    assert f"--export {zoo_dir / 'poles'} lies inside {zoo_dir}, which this command reads" in line
    assert history.exists() and (zoo_dir / "poles").is_dir()


def test_eval_and_mix_write_over_nothing_they_read_even_named_with_poles(zoo_dir, vcd_dev, tmp_path, capsys):
    zoo = tmp_path / "zoo"
    shutil.copytree(zoo_dir, zoo)
    data = tmp_path / "dev.json"
    data.write_bytes(vcd_dev.read_bytes())
    line = user_error(capsys, "eval", zoo, "--data", data, "--vector", "risk=1", "--out", data)
    assert f"--out {data} is {data}, which this command reads" in line and data.read_bytes() == vcd_dev.read_bytes()
    line = user_error(capsys, "mix", f"{zoo}:risk-taking,risk-averse", "--vector", "risk=1", "--export", zoo, "--overwrite")
    assert f"--export {zoo} is {zoo}, which this command reads" in line and (zoo / "pft_zoo.json").exists()
    line = user_error(capsys, "mix", "a" * 300, "--vector", "risk=1", "--export", tmp_path / "x")  # no traceback
    assert "is neither a zoo folder nor a Hub name" in line


def test_eval_refuses_a_vector_setting_a_dimension_the_data_lacks(zoo_dir, vcd_dev, tmp_path, capsys):
    risk = tmp_path / "risk.json"
    risk.write_text(json.dumps([r for r in json.loads(vcd_dev.read_text()) if r["preference domain"] == "Risk Orientation"]))
    line = user_error(capsys, "eval", zoo_dir, "--data", risk, "--vector", "risk=1,time=-1")  # risk alone is no test of it
    assert "the vector sets time, but the data holds no scenario of it" in line
