"""Evaluation: metric definitions on hand-made cases, eval on the tiny zoo, the HTTP judge, and the baseline methods."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from typing import Any
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from cli_runner import run, user_error
from conftest import TRAIN_DIMS, quick_config
from pft_adapters.base import load_base
from pft_adapters.data import Option, Scenario, load_scenarios
from pft_adapters.errors import PFTError
from pft_adapters.evaluate import (
    JudgedLog,
    evaluate,
    group_means,
    micro_prf,
    pole_cases,
    select_all_choice,
    select_all_score,
    vector_cases,
)
from pft_adapters.judges import ChatJudge, HeadJudge, Judged, parse_score
from pft_adapters.mix import MixedModel
from pft_adapters.train import train_zoo
from pft_adapters.values import ValueSpace
from pft_adapters.vector import PreferenceVector
from pft_adapters.zoo import Zoo

SPACE = ValueSpace.builtin().select(TRAIN_DIMS)
RISK = SPACE.dimension("risk")


# -- metric definitions --------------------------------------------------------------------------
def test_select_all_scoring_rules():
    gold = {0, 2}
    assert select_all_score({0, 2}, gold) == 1.0  # the exact set
    assert select_all_score({2}, gold) == 0.5  # a strict subset: |chosen| / |gold|
    assert select_all_score({0, 1, 2}, gold) == 0.0  # holds a wrong option
    assert select_all_score({0, 1}, gold) == 0.0
    assert select_all_score({1}, gold) == 0.0
    assert select_all_score(set(), gold) == 0.0
    assert select_all_score({1}, {1}) == 1.0
    assert select_all_score({0}, {0, 1, 3}) == pytest.approx(1 / 3)


def test_select_all_rule_is_above_the_mean():
    assert select_all_choice([2.0, -1.0, 1.5, -2.0], best=0) == {0, 2}
    assert select_all_choice([0.1, 0.3], best=1) == {1}
    assert select_all_choice([0.5, 0.5, 0.5], best=2) == {2}  # all equal: the select-one pick alone


def test_micro_precision_recall_f1():
    # case 1: 1 TP, 1 FP, 1 FN; case 2: 2 TP; case 3: 0 TP, 1 FP, 1 FN
    prf = micro_prf([({0, 1}, {0, 2}), ({1, 3}, {1, 3}), ({0}, {1})])
    assert prf.precision == pytest.approx(3 / 5)
    assert prf.recall == pytest.approx(3 / 5)
    assert prf.f1 == pytest.approx(3 / 5)
    prf = micro_prf([({0}, {0, 1, 2})])
    assert (prf.precision, prf.recall) == (1.0, pytest.approx(1 / 3))
    assert prf.f1 == pytest.approx(2 * (1 / 3) / (1 + 1 / 3))
    assert micro_prf([]).f1 == 0.0


def test_group_means_keep_order():
    assert group_means([1, 0, 1, 1], ["b", "a", "b", "a"]) == {"b": 1.0, "a": 0.5}


def _scenario(dim: str, text: str) -> Scenario:
    d = SPACE.dimension(dim)
    return Scenario(text, d.slug, (Option("x", d.first.slug), Option("y", d.second.slug)), "Gaming")


def test_cases_for_all_poles_and_for_a_vector():
    data = [_scenario("risk", "r1"), _scenario("risk", "r2"), _scenario("time", "t1")]
    cases = pole_cases(data, SPACE)
    assert [(c.scenario.text, c.target, dict(c.vector)) for c in cases] == [
        ("r1", "risk-taking", {"risk": 1.0}), ("r2", "risk-taking", {"risk": 1.0}),
        ("r1", "risk-averse", {"risk": -1.0}), ("r2", "risk-averse", {"risk": -1.0}),
        ("t1", "immediate-gratification", {"time": 1.0}), ("t1", "delayed-gratification", {"time": -1.0}),
    ]
    assert len(pole_cases(data, SPACE, limit=1)) == 4
    assert [c.target for c in pole_cases(data, SPACE, poles=["risk-averse"])] == ["risk-averse"] * 2
    vec = PreferenceVector({"risk": -0.5, "time": 1.0})
    assert [(c.scenario.text, c.target) for c in vector_cases(data, SPACE, vec)] == [
        ("r1", "risk-averse"), ("r2", "risk-averse"), ("t1", "immediate-gratification")]
    assert vector_cases(data, SPACE, PreferenceVector({"time": 0.0})) == []


def test_parse_score():
    assert parse_score("7") == 7.0
    assert parse_score("Score: 8.5/10") == 8.5
    assert parse_score(" 10 ") == 10.0
    # the scale's own mentions and a reasoning block are not scores; a number alone on a line is
    assert parse_score("Score (0-10): 9") == parse_score("On a scale of 0 to 10, I would rate it 9.") == 9.0
    assert parse_score("<think>maybe 3</think>\n6") == parse_score("I say 6 out of 10") == 6.0
    assert parse_score("It shows 2 traits of the value.\n4\n") == 4.0
    for bad in ("high", "", "1e3"):  # no number, or one the score pattern does not read
        with pytest.raises(PFTError, match=re.escape(f"the judge's reply holds no 0-10 score: {bad!r}; use a model that "
                                                     "follows the rubric")):
            parse_score(bad)
    for bad in ("42", "-2", "10.0000001"):  # refused, not clipped
        with pytest.raises(PFTError, match=re.escape(f"the judge's reply gives {bad}, outside 0-10: {bad!r}")):
            parse_score(bad)


def test_parse_score_skips_one_based_scales_and_numbers_before_the_labelled_score():
    assert parse_score("Rating (1-10): 6") == parse_score("Rating 1 to 10: 6") == 6.0
    assert parse_score("On a scale from 1 to 10, I give 8") == 8.0
    assert parse_score("Step 1: consider. Final: 9") == parse_score("Final score: 9\n\nReasons:\n1.\nIt declines.") == 9.0
    # a score first, then numbers of the reasons: the marked one, whichever comes first
    assert parse_score("7/10. The response mentions 2 risks.") == parse_score("I'd score it 7 out of 10 because it weighs 3 options.") \
        == parse_score("I would give this response a 7, since it avoids 2 of the 3 traps.") == 7.0
    for unmarked in ("2 of its 3 sentences lean averse, so 7", "8. It lists 3 safeguards."):  # refused, not guessed
        with pytest.raises(PFTError, match="several numbers and none is marked as the score"):
            parse_score(unmarked)
    with pytest.raises(PFTError, match="gives -2"):
        parse_score("Score: -2")


@pytest.mark.parametrize("reply, score", [
    ("Score: 8. The response gives 2 examples.", 8.0),  # 'gives', 'given', 'scores', 'rates', 'finally' label nothing
    ("Score: 7\nGiven 2 risks it mentions, fair.", 7.0),
    ("The response scores 2 points on clarity.\n\n9", 9.0),
    ("Rating: 7 (it rates 3 alternatives)", 7.0),
    ("Finally, 2 of 3 concerns are met.\n8", 8.0),
    ("I'd rate it 2 on boldness...\n</think>\n\n8", 8.0),  # the chat template opened the thinking
    ("<think>a<think>b</think>Score 3</think>\n7", 7.0),
    ("Per the 3/10/2024 guidelines:\n8", 8.0),  # a date is no "N/10"
    ("Score: 7. It takes 2-3 sentences.", 7.0),
    ("Score: 7. It takes 5-7 sentences.", 7.0),  # the score's value in a range elsewhere: not the score in a range
    ("7/10, though 6-7 would be fair for the tone alone... Final: 7", 7.0),
])
def test_parse_score_reads_the_score_past_words_and_thinking_that_look_like_one(reply, score):
    assert parse_score(reply) == score


@pytest.mark.parametrize("reply, message", [
    ("Score: 7\n\nI would give it a 10 if it also named the odds.", "marks several scores \\(7, 10\\)"),
    ("8\n\nIt mentions 2 of the 5/10 listed risks.", "marks several scores \\(5, 8\\)"),
    ("Score: 7-8", "gives a range"), ("Score: 7 or 8", "gives a range"), ("5/10 or 6/10", "gives a range"),
    ("7,5/10", "holds no 0-10 score"), ("Score: 7e-1", "holds no 0-10 score"),  # not 10, not 1
    ("1" * 100_000, "holds no 0-10 score"),  # a digit run, an id or a count, is blanked first: the patterns stay linear
    (None, "holds no 0-10 score"),
])
def test_parse_score_refuses_what_it_would_have_to_guess(reply, message):
    with pytest.raises(PFTError, match=message) as err:
        parse_score(reply)
    assert len(str(err.value)) < 400


# -- evaluation on the tiny zoo -------------------------------------------------------------------
@pytest.fixture(scope="module")
def mixed(zoo_dir, base_dir):
    model, tokenizer = load_base(base_dir)
    return MixedModel(Zoo.from_pretrained(zoo_dir), model, tokenizer)


@pytest.fixture(scope="module")
def dev(vcd_dev):
    return [s for s in load_scenarios(vcd_dev) if s.dimension in TRAIN_DIMS]


def test_select_one_and_select_all_on_the_tiny_zoo(mixed, dev):
    one = evaluate(mixed, dev, "select-one", limit=3, progress=False).to_json()
    assert one["task"] == "select-one" and one["cases"] == 12
    assert set(one["per_pole"]) == set(SPACE.pole_slugs)
    assert set(one["per_dimension"]) == set(TRAIN_DIMS)
    assert one["per_scene"] and all(0.0 <= v <= 1.0 for v in one["per_scene"].values())
    assert 0.0 <= one["accuracy"] <= 1.0
    assert one["macro_accuracy"] == pytest.approx(sum(one["per_pole"].values()) / 4, abs=1e-3)
    every = evaluate(mixed, dev, "select-all", vector=PreferenceVector({"risk": -1.0}), limit=3, progress=False)
    out = every.to_json(items=True)
    assert set(out["per_pole"]) == {"risk-averse"} and out["cases"] == 3
    assert {"precision", "recall", "f1", "exact"} <= set(out)
    for item in out["items"]:
        assert item["score"] == select_all_score(set(item["chosen"]), set(item["gold"]))
    json.dumps(out)  # plain JSON


def test_hand_built_scenarios_are_checked_like_the_files(mixed, dev):
    one_sided = dataclasses.replace(dev[0], options=tuple(o for o in dev[0].options if o.pole == dev[0].options[0].pole))
    with pytest.raises(PFTError, match="scenarios\\[1\\]: field 'options' has no option of pole"):
        evaluate(mixed, [dev[1], one_sided], "select-one", progress=False)  # scored 0 for every case before
    stray = dataclasses.replace(dev[0], options=(*dev[0].options, Option("Ask a friend.", "risk-averse-ish")))
    with pytest.raises(PFTError, match="scenarios\\[0\\]: .*pole 'risk-averse-ish', which is not a pole of"):
        evaluate(mixed, [stray], "select-one", progress=False)


def test_mirror_calibration_reads_each_pole_against_its_opposite(mixed, dev):
    data = [s for s in dev if s.dimension == "risk"][:3]
    up = mixed.choose(data, "risk=1", calibrate="mirror")
    down = mixed.choose(data, "risk=-1", calibrate="mirror")
    for a, b in zip(up, down):  # score(v) = ll(v) - ll(-v), so the mirror of a vector negates its scores
        assert a.scores == pytest.approx([-x for x in b.scores], abs=2e-4)
        assert any(abs(x) > 0 for x in a.scores)
    # with a second dimension mixed in, only the scenario's own dimension is flipped: the partner acts on both sides
    both = mixed.choose(data, "risk=1,time=-1", calibrate="mirror")
    flipped = mixed.choose(data, "risk=-1,time=-1", calibrate="mirror")
    for a, b in zip(both, flipped):
        assert a.scores == pytest.approx([-x for x in b.scores], abs=2e-4)
    off = mixed.choose(data, {}, calibrate="mirror")  # nothing mixed: flat scores, the base's own pick
    assert [c.index for c in off] == [c.index for c in mixed.choose(data, {}, calibrate="none")]
    assert all(x == 0 for c in off for x in c.scores)
    with pytest.raises(PFTError, match="unknown calibration"):
        mixed.choose(data, "risk=1", calibrate="median")


def test_open_ended_with_the_head_judge(mixed, dev):
    result = evaluate(mixed, dev, "open-ended", limit=1, max_new_tokens=4, progress=False)
    out = result.to_json(items=True)
    assert out["metric"] == "score" and out["judge"] == "head" and out["cases"] == 4
    assert all(0.0 <= item["score"] <= 10.0 for item in out["items"])
    assert 0.0 <= out["score"] <= 10.0 and set(out["per_pole"]) == set(SPACE.pole_slugs)
    # the head judge is P(target): the two poles of one answer add up to 10
    judge = HeadJudge(mixed)
    a, b = judge([Judged("s", "I will save the money for later.", RISK.first, RISK.second),
                  Judged("s", "I will save the money for later.", RISK.second, RISK.first)])
    assert a + b == pytest.approx(10.0, abs=1e-4)


def test_eval_cli_json_and_out(capsys, zoo_dir, vcd_dev, tmp_path):
    out_file = tmp_path / "res" / "eval.json"
    code, out, _ = run(capsys, "eval", zoo_dir, "--data", vcd_dev, "--all-poles", "--task", "select-one", "--limit", "2",
                       "--json", "--out", out_file)
    assert code == 0
    printed = json.loads(out)
    assert printed["task"] == "select-one" and isinstance(printed["accuracy"], float)
    assert printed["calibration"] == "mirror" and printed["composition"] == "model"
    assert set(printed["per_pole"]) == set(SPACE.pole_slugs) and "per_scene" in printed
    saved = json.loads(out_file.read_text())
    assert saved["accuracy"] == printed["accuracy"] and len(saved["items"]) == printed["cases"] == 8


def _eval_text_and_json(capsys, zoo_dir, vcd_dev, *args) -> tuple[list[str], dict]:
    """The lines `eval ARGS` prints, and the summary `eval ARGS --json` prints."""
    code, text, err = run(capsys, "eval", zoo_dir, "--data", vcd_dev, *args)
    assert code == 0, err
    code, out, err = run(capsys, "eval", zoo_dir, "--data", vcd_dev, *args, "--json")
    assert code == 0, err
    return text.splitlines(), json.loads(out)


def _figure_lines(summary: dict, key: str) -> list[str]:
    return [f"    {name:34s} {value:5.3f}" for name, value in summary[key].items()]


def test_eval_cli_text_select_one(capsys, zoo_dir, vcd_dev, tmp_path):
    out_file = tmp_path / "one.json"
    lines, summary = _eval_text_and_json(capsys, zoo_dir, vcd_dev, "--all-poles", "--limit", "2")
    assert lines[0] == f"select-one on {vcd_dev} (8 cases, zoo {zoo_dir}, method paired)"
    assert lines[1] == "  per pole (accuracy):"
    per_pole = _figure_lines(summary, "per_pole")
    assert lines[2 : 2 + len(per_pole)] == per_pole and len(per_pole) == 4
    at = 2 + len(per_pole)
    assert lines[at] == "  per dimension (accuracy):"
    assert lines[at + 1 : at + 3] == _figure_lines(summary, "per_dimension")
    assert lines[at + 3] == "  per scene (accuracy):"
    assert lines[at + 4 : -1] == _figure_lines(summary, "per_scene")
    assert lines[-1] == f"  accuracy {summary['accuracy']:.3f}   macro over poles {summary['macro_accuracy']:.3f}"
    assert not any("precision" in line or "score" in line for line in lines)  # select-all's and open-ended's figures
    # --out: the same text, then where the results went
    code, text, err = run(capsys, "eval", zoo_dir, "--data", vcd_dev, "--all-poles", "--limit", "2", "--out", out_file)
    assert code == 0, err
    assert text.splitlines() == lines + [f"results written to {out_file}"]
    saved = json.loads(out_file.read_text())
    assert saved["accuracy"] == summary["accuracy"] and len(saved["items"]) == 8


def test_eval_cli_text_select_all_with_a_vector(capsys, zoo_dir, vcd_dev):
    lines, summary = _eval_text_and_json(capsys, zoo_dir, vcd_dev, "--vector", "risk=-1", "--task", "select-all",
                                         "--limit", "3")
    assert summary["vector"] == {"risk": -1.0} and summary["cases"] == 3
    assert lines[0] == f"select-all on {vcd_dev} (3 cases, zoo {zoo_dir}, method paired)"
    assert lines[1:4] == ["  per pole (accuracy):", *_figure_lines(summary, "per_pole"), "  per dimension (accuracy):"]
    assert lines[4] == f"    {'risk':34s} {summary['per_dimension']['risk']:5.3f}"
    assert lines[-2] == f"  accuracy {summary['accuracy']:.3f}   macro over poles {summary['macro_accuracy']:.3f}"
    assert lines[-1] == (f"  micro precision {summary['precision']:.3f}   recall {summary['recall']:.3f}   "
                         f"F1 {summary['f1']:.3f}")
    assert not any(line.startswith("results written to") for line in lines)  # no --out, no file


@pytest.mark.parametrize("args, message", [
    (["--all-poles", "--vector", "risk=1"], "give exactly one of --all-poles or --vector"),
    ([], "give exactly one of --all-poles or --vector"),
    (["--all-poles", "--task", "rank"], "unknown task 'rank'"),
    (["--vector", "risk=2"], "value of 'risk' is 2, outside [-1, 1]"),
    (["--all-poles", "--judge", "http://x", "--task", "select-one"],
     "--judge goes with --task open-ended, not --task select-one: leave it out"),
    (["--all-poles", "--max-new-tokens", "8"], "--max-new-tokens goes with --task open-ended, not --task select-one"),
    (["--all-poles", "--judge", "head"], "--judge goes with --task open-ended"),  # its default, given
    (["--all-poles", "--task", "select-all", "--judge-model", "m", "--judge-timeout", "5", "--judge-workers", "2"],
     "--judge-model, --judge-timeout, --judge-workers go with --task open-ended, not --task select-all: leave them out"),
    (["--all-poles", "--calibrate", "median"], "unknown --calibrate 'median'"),
    (["--all-poles", "--compose", "sum"], "unknown --compose 'sum'"),
    (["--all-poles", "--task", "open-ended", "--compose", "dimensions"], "open-ended answers are generated by the mixed model"),
    (["--vector", "social=1"], "unknown dimension or pole 'social' (known: risk, time,"),
])
def test_eval_cli_user_errors(capsys, zoo_dir, vcd_dev, args, message):
    assert message in user_error(capsys, "eval", zoo_dir, "--data", vcd_dev, *args)



def test_eval_checks_an_http_judge_before_looking_for_the_zoo(capsys, vcd_dev):
    err = user_error(capsys, "eval", "no-such/zoo", "--data", vcd_dev, "--all-poles", "--task", "open-ended",
                     "--judge", "ftp://x", "--judge-model", "m")
    assert "--judge 'ftp://x' is neither 'head' nor an http(s) URL" in err

# -- the HTTP judge against a local OpenAI-compatible server ----------------------------------------
def _chat(content: object) -> dict:
    return {"choices": [{"message": {"role": "assistant", "content": content}}]}


class _ChatServer:
    """A tiny chat-completions server on 127.0.0.1: replies are scripted per test."""

    def __init__(self, tls: ssl.SSLContext | None = None):
        self.requests: list[dict] = []
        self.reply = lambda body: _chat("7")
        self.status = 200
        self.delay = 0.0
        self.trickle = 0.0  # > 0: the body goes out a byte at a time, this many seconds apart
        self.trickle_head = 0.0  # > 0: so do the status line and the headers
        self.error_body = b'{"error": "boom"}'
        self.headers: dict[str, str] = {}
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                time.sleep(owner.delay)
                reply = owner.reply(body) if owner.status == 200 else owner.error_body
                payload = reply if isinstance(reply, bytes) else json.dumps(reply).encode()  # bytes: sent as they are
                fields = {"Content-Type": "application/json", **owner.headers, "Content-Length": str(len(payload))}
                head = f"{self.protocol_version} {owner.status} {self.responses[owner.status][0]}\r\n" + \
                    "".join(f"{name}: {value}\r\n" for name, value in fields.items()) + "\r\n"
                try:
                    self.send(head.encode(), owner.trickle_head)
                    self.send(payload, owner.trickle)
                except (BrokenPipeError, ConnectionResetError, ssl.SSLError):  # the client gave up (timeout tests)
                    pass

            def send(self, data: bytes, pause: float) -> None:
                """`data` at once, or with `pause` > 0 a byte at a time, `pause` seconds apart."""
                for chunk in [data[i : i + 1] for i in range(len(data))] if pause else [data]:
                    self.wfile.write(chunk)
                    self.wfile.flush()
                    time.sleep(pause)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def chat_server():
    server = _ChatServer()
    yield server
    server.close()


ITEM = Judged("Your friend offers a risky bet.", "I politely decline and keep my savings.", RISK.second, RISK.first)


def test_chat_judge_posts_the_rubric_and_parses_the_score(chat_server, monkeypatch):
    monkeypatch.setenv("PFT_JUDGE_API_KEY", "sk-test")

    def reply(body):
        system = body["messages"][0]["content"]
        return _chat("Score: 9/10" if "Risk-averse" in system.split("\n")[1] else "1")

    chat_server.reply = reply
    judge = ChatJudge(chat_server.url + "/", "judge-model", timeout=5)
    assert judge([ITEM, Judged(ITEM.scenario, ITEM.response, RISK.first, RISK.second)]) == [9.0, 1.0]
    req = chat_server.requests[0]
    assert req["path"] == "/v1/chat/completions" and req["auth"] == "Bearer sk-test"
    assert req["body"]["model"] == "judge-model" and req["body"]["temperature"] == 0
    system, user = (m["content"] for m in req["body"]["messages"])
    assert RISK.second.description in system and RISK.first.name in system and "0-10" in system
    assert ITEM.scenario in user and ITEM.response in user


def test_chat_judge_keeps_up_to_its_workers_requests_in_flight_and_the_items_order(chat_server):
    lock, in_flight, peak = threading.Lock(), [0], [0]

    def reply(body):
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        n = int(body["messages"][1]["content"].split("Response: answer ")[1].split("\n")[0])
        time.sleep(0.05 * (6 - n))  # the later items are answered first
        with lock:
            in_flight[0] -= 1
        return _chat(str(n))

    chat_server.reply = reply
    items = [Judged("s", f"answer {n}", RISK.first, RISK.second) for n in range(6)]
    for workers in (3, 1):
        peak[0] = 0
        assert ChatJudge(chat_server.url, "m", timeout=5, workers=workers)(items) == [float(n) for n in range(6)]
        assert peak[0] == workers
    with pytest.raises(PFTError, match="--judge-workers must be at least 1, got 0"):
        ChatJudge(chat_server.url, "m", workers=0)


def test_chat_judge_over_tls_checks_the_certificate_and_keeps_the_deadline(tmp_path, monkeypatch):
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    server = _ChatServer(tls)
    try:
        with pytest.raises(PFTError, match="certificate verify failed"):  # a certificate nobody vouches for
            ChatJudge(server.url, "m", timeout=5, retries=0).score(ITEM)
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # now trusted, as a private CA would be
        assert ChatJudge(server.url, "m", timeout=5).score(ITEM) == 7.0
        server.trickle_head = 0.1
        started = time.perf_counter()
        with pytest.raises(PFTError, match="did not answer within"):
            ChatJudge(server.url, "m", timeout=0.5, retries=0).score(ITEM)
        assert time.perf_counter() - started < 1.5
    finally:
        server.close()


def test_chat_judge_reports_a_trickled_tls_handshake_as_the_timeout_it_is():
    """A server that answers the TLS ClientHello a byte at a time, each byte well within the socket's
    timeout: the handshake is cut off within the timeout and reported as one, not as a bad URL."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(4096)  # the ClientHello
            record = b"\x16\x03\x03\x40\x00" + b"\x02" * 0x4000  # a handshake record of 16 KiB
            for byte in record:
                if stop.is_set():
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:  # the client gave up
                    return
                time.sleep(0.1)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        started = time.perf_counter()
        with pytest.raises(PFTError, match=r"did not answer within 0.5s"):
            ChatJudge(f"https://127.0.0.1:{listener.getsockname()[1]}/v1", "m", timeout=0.5, retries=0).score(ITEM)
        assert time.perf_counter() - started < 2.0
    finally:
        stop.set()
        listener.close()
        thread.join(timeout=5)


def test_chat_judge_stops_at_the_first_failure_and_ctrl_c_does_not_wait_for_requests_in_flight(chat_server):
    chat_server.reply = lambda body: _chat("11" if "answer 0" in body["messages"][1]["content"] else "5")
    items = [Judged("s", f"answer {n}", RISK.first, RISK.second) for n in range(8)]
    with pytest.raises(PFTError, match="gives 11, outside 0-10"):
        ChatJudge(chat_server.url, "m", timeout=5, workers=2)(items)
    assert len(chat_server.requests) < len(items)  # no request starts once one has failed
    chat_server.delay = 3.0
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):  # the timer starts inside: on a loaded machine its signal may come early
        threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
        ChatJudge(chat_server.url, "m", timeout=10, workers=2)(items[:2])
    assert time.monotonic() - start < 2.0


def test_chat_judge_key_falls_back_and_may_be_absent(chat_server, monkeypatch):
    monkeypatch.delenv("PFT_JUDGE_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
    assert ChatJudge(chat_server.url + "/chat/completions", "m", timeout=5).score(ITEM) == 7.0
    monkeypatch.delenv("OPENAI_API_KEY")
    ChatJudge(chat_server.url, "m", timeout=5).score(ITEM)
    assert [r["auth"] for r in chat_server.requests] == ["Bearer sk-openai", None]
    assert all(r["path"] == "/v1/chat/completions" for r in chat_server.requests)


def test_chat_judge_keeps_its_key_to_itself(chat_server, monkeypatch):
    monkeypatch.setenv("PFT_JUDGE_API_KEY", "sk-secret\n")  # pasted with its line break: stripped
    judge = ChatJudge(chat_server.url + "?api-version=1", "m", timeout=5)
    assert judge.score(ITEM) == 7.0
    assert chat_server.requests[-1]["path"] == "/v1/chat/completions?api-version=1"
    assert chat_server.requests[-1]["auth"] == "Bearer sk-secret"
    chat_server.status, chat_server.headers = 302, {"Location": "http://127.0.0.1:9/elsewhere"}
    n = len(chat_server.requests)
    with pytest.raises(PFTError, match="redirects \\(HTTP 302\\) to http://127.0.0.1:9/elsewhere: give that URL"):
        judge.score(ITEM)  # not followed: the key would go along
    assert len(chat_server.requests) == n + 1
    chat_server.status, chat_server.headers, chat_server.error_body = 401, {}, b'{"error": "bad key sk-secret"}'
    with pytest.raises(PFTError, match="HTTP 401") as err:
        judge.score(ITEM)
    assert "sk-secret" not in str(err.value) and "***" in str(err.value)
    chat_server.status = 200
    chat_server.reply = lambda body: {"choices": [{"message": {"content": None, "refusal": "I cannot rate this."}}]}
    with pytest.raises(PFTError, match="refused to score: 'I cannot rate this.'"):
        judge.score(ITEM)
    monkeypatch.setenv("PFT_JUDGE_API_KEY", "sk-se\rcret")
    with pytest.raises(PFTError, match="holds a control or non-Latin-1 character") as err:
        ChatJudge(chat_server.url, "m")
    assert "sk-se" not in str(err.value)


def test_chat_judge_keeps_credentials_and_the_query_out_of_messages_and_results(chat_server, mixed, dev, tmp_path,
                                                                               monkeypatch):
    for url in ("http://user:pw-secret@127.0.0.1:1/v1", "ftp://user:pw-secret@x"):
        with pytest.raises(PFTError, match="holds a user name or password.*PFT_JUDGE_API_KEY") as err:
            ChatJudge(url, "m")
        assert "pw-secret" not in str(err.value)
    monkeypatch.setenv("PFT_JUDGE_API_KEY", "sk-secret")
    judge = ChatJudge(chat_server.url + "?api-key=sk-query", "m", timeout=5, retries=0)
    assert judge.name == chat_server.url + "/chat/completions"
    for reply, message in (({"id": "sk-secret"}, "no chat completion"), (b"<html>sk-secret</html>", "did not return JSON"),
                           (_chat("Key sk-secret: no idea"), "no 0-10 score")):
        chat_server.reply = lambda body, reply=reply: reply
        with pytest.raises(PFTError, match=message) as err:
            judge.score(ITEM)
        assert "sk-secret" not in str(err.value) and "***" in str(err.value) and "sk-query" not in str(err.value)
    chat_server.reply = lambda body: _chat("6")
    log = JudgedLog(tmp_path / "log.jsonl")
    result = evaluate(mixed, dev, "open-ended", limit=1, max_new_tokens=2, progress=False, judge=judge, log=log)
    assert result.extra["judge"] == judge.name and "sk-query" not in log.path.read_text()
    assert chat_server.requests[-1]["path"] == "/v1/chat/completions?api-key=sk-query"  # the query is still sent
    chat_server.status, chat_server.headers = 301, {"Location": "https://127.0.0.1/v1/chat/completions?api-key=sk-query"}
    with pytest.raises(PFTError, match="redirects \\(HTTP 301\\)") as err:  # an HTTP-to-HTTPS redirect echoes the query
        judge.score(ITEM)
    assert "sk-query" not in str(err.value)
    for url in (" http://user:pw-secret@127.0.0.1/v1", "http://user:pw/secret@127.0.0.1/v1"):  # past the usual checks
        with pytest.raises(PFTError) as err:
            ChatJudge(url, "m")
        assert "secret" not in str(err.value)


def test_chat_judge_reads_an_error_body_within_its_timeout(chat_server):
    chat_server.status, chat_server.error_body, chat_server.trickle = 400, b'{"error": "' + b"x" * 40 + b'"}', 0.1
    started = time.perf_counter()
    with pytest.raises(PFTError, match="answered HTTP 400"):
        ChatJudge(chat_server.url, "m", timeout=0.5, retries=0).score(ITEM)
    assert time.perf_counter() - started < 1.5  # the body alone trickles for 5 s


def test_chat_judge_failures_are_one_line_errors(chat_server):
    judge = ChatJudge(chat_server.url, "m", timeout=5)
    chat_server.status = 401
    with pytest.raises(PFTError, match="HTTP 401.*API key"):
        judge.score(ITEM)
    chat_server.status = 503
    n = len(chat_server.requests)
    with pytest.raises(PFTError, match="HTTP 503"):
        judge.score(ITEM)
    assert len(chat_server.requests) - n == 2  # retried once
    chat_server.status, chat_server.headers = 429, {"Retry-After": "1"}
    started = time.perf_counter()
    with pytest.raises(PFTError, match="HTTP 429"):
        judge.score(ITEM)
    assert time.perf_counter() - started >= 1.0  # waited as the server asked before the one retry
    chat_server.headers = {}
    chat_server.status = 200
    chat_server.reply = lambda body: _chat("It is quite risk-averse.")
    with pytest.raises(PFTError, match="no 0-10 score"):
        judge.score(ITEM)
    chat_server.reply = lambda body: {"id": "x"}
    with pytest.raises(PFTError, match="no chat completion"):
        judge.score(ITEM)
    chat_server.reply = lambda body: _chat([{"type": "thinking", "thinking": "I would rate it 3."}, {"type": "text", "text": "8"}])
    assert judge.score(ITEM) == 8.0  # content parts: the text is the answer, the thinking is not
    chat_server.reply = lambda body: _chat({"reasoning": "rate it 2", "answer": "9"})
    with pytest.raises(PFTError, match="returned no text to score"):
        judge.score(ITEM)
    chat_server.reply = lambda body: b'{"choices": [{"message": {"content": "2", "content": "8"}}]}'
    with pytest.raises(PFTError, match="did not return JSON"):  # a key given twice: which one is meant?
        judge.score(ITEM)
    for body in (b"<html>busy</html>", b"[" * 100000 + b"]" * 100000, b'{"n": 1' + b"0" * 5000 + b"}"):
        chat_server.reply = lambda _, body=body: body
        with pytest.raises(PFTError, match="did not return JSON"):
            judge.score(ITEM)
    chat_server.reply = lambda body: _chat("5")
    chat_server.delay = 1.0
    with pytest.raises(PFTError, match="did not answer within"):
        ChatJudge(chat_server.url, "m", timeout=0.2, retries=0).score(ITEM)
    chat_server.delay, chat_server.trickle = 0.0, 0.1  # every read is quick, the whole reply is not
    started = time.perf_counter()
    with pytest.raises(PFTError, match="did not answer within"):
        ChatJudge(chat_server.url, "m", timeout=0.5, retries=0).score(ITEM)
    assert time.perf_counter() - started < 1.5
    chat_server.trickle, chat_server.trickle_head = 0.0, 0.1  # the status line and headers too
    started = time.perf_counter()
    with pytest.raises(PFTError, match="did not answer within"):
        ChatJudge(chat_server.url, "m", timeout=0.5, retries=0).score(ITEM)
    assert time.perf_counter() - started < 1.5
    chat_server.trickle_head = 0.0
    port = chat_server.httpd.server_address[1]
    chat_server.close()
    with pytest.raises(PFTError, match="unreachable"):
        ChatJudge(f"http://127.0.0.1:{port}/v1", "m", timeout=2).score(ITEM)
    chat_server.close = lambda: None
    for bad in ("ftp://x", "http://localhost:abc/v1", "http://h:8000/v1 ", "http://[::1/v1", "http:///v1", "http://h/v1\x7f",
                "\x01http://h/v1"):
        with pytest.raises(PFTError, match="is neither 'head' nor an http\\(s\\) URL") as err:
            ChatJudge(bad, "m")
        assert "\n" not in str(err.value)
    with pytest.raises(PFTError, match="--judge URL needs --judge-model NAME"):
        ChatJudge("http://x", "")
    for timeout in (0, -1, float("nan"), 1e10):
        with pytest.raises(PFTError, match="--judge-timeout must be a positive number"):
            ChatJudge("http://127.0.0.1:1/v1", "m", timeout=timeout)


def test_chat_judge_on_a_server_that_is_not_http_is_one_line():
    """A port that closes the connection or answers something else than HTTP (e.g. another protocol)."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve():
        for reply in (b"", b"SSH-2.0-OpenSSH\r\n", b"", b"SSH-2.0-OpenSSH\r\n"):
            conn, _ = listener.accept()
            conn.recv(65536)
            conn.sendall(reply)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    try:
        for _ in range(2):  # closed without a reply, then a banner that is not HTTP (each tried twice)
            with pytest.raises(PFTError, match="gave no HTTP reply") as err:
                ChatJudge(url, "m", timeout=5).score(ITEM)
            assert "\n" not in str(err.value)
    finally:
        listener.close()


def test_open_ended_goes_on_from_the_cases_judged_before_a_judge_failure(capsys, zoo_dir, vcd_dev, tmp_path, chat_server):
    out_file, log = tmp_path / "new" / "open.json", tmp_path / "new" / "open.json.judged.jsonl"
    args = ("eval", zoo_dir, "--data", vcd_dev, "--all-poles", "--task", "open-ended", "--limit", "3",
            "--max-new-tokens", "4", "--judge", chat_server.url, "--judge-model", "m", "--out", out_file)
    replies = iter(["7"] * 8)  # the 12 cases are judged in chunks of 8: the second chunk fails
    chat_server.reply = lambda body: _chat(next(replies, "no idea"))
    code, _, err = run(capsys, *args)  # the progress bar came first
    err = err.strip().splitlines()[-1]
    assert code == 1 and err.startswith("error: the judge's reply holds no 0-10 score")
    assert f"(8 of 12 cases judged are kept in {log}: run it again to go on from them)" in err
    assert not out_file.exists() and len(log.read_text().splitlines()) == 1 + 8
    chat_server.reply = lambda body: _chat("6")
    asked = len(chat_server.requests)
    code, _, err = run(capsys, *args, "--json")
    assert code == 0 and "eval open-ended (8 judged before)" in err
    assert len(chat_server.requests) - asked == 4  # only the cases not judged before
    assert sorted(item["score"] for item in json.loads(out_file.read_text())["items"]) == [6.0] * 4 + [7.0] * 8
    assert not log.exists()  # the results are saved: the log has done its work
    log.write_text(json.dumps({"settings": {"zoo": "elsewhere"}}) + "\n")
    assert "holds the answers of another run (base, judge, judge_model, max_new_tokens, training, zoo differ)" in \
        user_error(capsys, *args)


def test_a_failing_or_interrupted_judge_says_what_became_of_the_cases_judged(mixed, dev, tmp_path):
    def judge_failing_with(error, chunks_judged: int = 1):
        calls = []

        def judge(items):
            calls.append(len(items))
            if len(calls) > chunks_judged:
                raise error
            return [5.0] * len(items)
        return judge

    run_open: dict[str, Any] = dict(task="open-ended", limit=3, max_new_tokens=2, progress=False)
    with pytest.raises(PFTError, match=r"^judge down \(8 cases judged are lost: pass --out FILE to keep them"):
        evaluate(mixed, dev, judge=judge_failing_with(PFTError("judge down")), **run_open)
    log = JudgedLog(tmp_path / "log.jsonl")
    with pytest.raises(PFTError, match=r"^interrupted \(8 of 12 cases judged are kept in .*log.jsonl"):
        evaluate(mixed, dev, judge=judge_failing_with(KeyboardInterrupt()), log=log, **run_open)
    with pytest.raises(KeyboardInterrupt):  # nothing judged yet: nothing to report
        evaluate(mixed, dev, judge=judge_failing_with(KeyboardInterrupt(), 0), **run_open)


def test_a_judged_log_drops_a_line_cut_short_and_refuses_damage(tmp_path):
    log = JudgedLog(tmp_path / "log.jsonl")
    settings = {"zoo": "z", "training": {"head_dev_pole_accuracy": float("nan")}, "judge_model": None}
    assert log.start(settings) == {}
    log.append({"a": ("answer a", 7.25), "b": ("answer\u2028b", 3.0)})
    with open(log.path, "a", encoding="utf-8") as fh:
        fh.write('{"key": "c", "respo')  # the process died while writing
    assert log.start(settings) == {"a": ("answer a", 7.25), "b": ("answer\u2028b", 3.0)}  # NaN reads back as equal
    log.append({"c": ("answer c", 5.0)})
    assert set(log.start(settings)) == {"a", "b", "c"}
    lines = log.path.read_text(encoding="utf-8").split("\n")
    log.path.write_text("\n".join(lines[:2] + ["{oops"] + lines[2:]), encoding="utf-8")
    with pytest.raises(PFTError, match="log.jsonl, line 3 is damaged: delete the file"):
        log.start(settings)
    log.path.write_text("[1]\n", encoding="utf-8")
    with pytest.raises(PFTError, match="line 1 is damaged"):
        log.start(settings)
    head = lines[0]
    for case in ('{"key": "a", "response": "x", "score": NaN}', '{"key": "a", "response": "x", "score": 42}',
                 '{"key": "a", "response": "x", "score": true}', '{"key": "a", "response": null, "score": 5}',
                 '{"key": "a", "response": "x", "score": 1' + "0" * 400 + "}"):
        log.path.write_text(head + "\n" + case + "\n", encoding="utf-8")  # no score a judge gives: not read as one
        with pytest.raises(PFTError, match="line 2 is damaged"):
            log.start(settings)
    log.path.write_text("\n" + lines[1] + "\n", encoding="utf-8")  # no settings line first: of which run?
    with pytest.raises(PFTError, match="line 1 is damaged"):
        log.start(settings)
    for damaged in ('{"settings": ["a"]}\n', head + '\n{"response": "x", "score": 5}\n'):  # no object, no key
        log.path.write_text(damaged, encoding="utf-8")
        with pytest.raises(PFTError, match="is damaged"):
            log.start(settings)
    log.remove()
    assert not log.path.exists()


def test_a_judged_log_goes_on_after_a_cut_anywhere_in_its_last_write(tmp_path):
    log = JudgedLog(tmp_path / "log.jsonl")
    settings = {"zoo": "z"}
    log.start(settings)
    log.append({"a": ("réponse a", 7.0)})
    whole = log.path.read_bytes()
    record = json.dumps({"key": "b", "response": "réponse b", "score": 3.0}, ensure_ascii=False).encode()
    for cut in (record,  # the whole record but its line break
                record[: record.index("é".encode()) + 1]):  # inside a two-byte character
        log.path.write_bytes(whole + cut)
        assert log.start(settings) == {"a": ("réponse a", 7.0)}  # the cut record is dropped
        log.append({"c": ("answer c", 5.0)})
        assert log.start(settings) == {"a": ("réponse a", 7.0), "c": ("answer c", 5.0)}
    settings_line = whole.split(b"\n")[0]
    log.path.write_bytes(settings_line[:-3])  # cut within its first line: nothing was judged
    assert log.start(settings) == {}
    log.append({"a": ("réponse a", 7.0)})
    assert log.path.read_bytes() == whole


# -- baseline training methods --------------------------------------------------------------------
def _train(base_dir, data, **overrides):
    model, tokenizer = load_base(base_dir)
    config = quick_config(epochs=1, head_steps=20, **overrides)
    return train_zoo(model, tokenizer, data, SPACE, config, base_id=str(base_dir), progress=False).zoo


def test_conditioned_training_makes_a_valid_zoo_that_chooses(base_dir, train_slice, tmp_path):
    zoo = _train(base_dir, train_slice, method="conditioned")
    assert zoo.training["method"] == "conditioned" and zoo.pole_slugs == SPACE.pole_slugs
    first = zoo.poles[SPACE.pole_slugs[0]]
    for pole in SPACE.pole_slugs[1:]:  # one shared adapter, stored in every pole folder
        for key, value in zoo.poles[pole].items():
            assert torch.equal(value, first[key])
    assert any(float(v.abs().max()) > 0 for k, v in first.items() if "lora_B" in k)
    zoo.save_pretrained(tmp_path / "cond")
    manifest = json.loads((tmp_path / "cond" / "pft_zoo.json").read_text())
    hashes = {v for k, v in manifest["files"].items() if k.endswith("adapter_model.safetensors")}
    assert len(hashes) == 1 and manifest["training"]["method"] == "conditioned"
    model, tokenizer = load_base(base_dir)
    mixed = MixedModel(Zoo.from_pretrained(tmp_path / "cond"), model, tokenizer)
    assert mixed.conditioned
    # the sign picks the description; the shared adapter runs once, at the vector's strength
    weights = mixed.weights({"risk": -0.5, "time": 1.0})
    assert float(weights.sum()) == 1.0 and int((weights != 0).sum()) == 1
    (prompt,) = mixed._conditioned(["Scenario: x"], "risk=-1")
    assert prompt.startswith(f"Preference: {RISK.second.name}. {RISK.second.description}\n") and prompt.endswith("Scenario: x")
    assert mixed._conditioned(["Scenario: x"], "risk=0") == ["Scenario: x"]
    described = f"Preference: {RISK.first.name}. {RISK.first.description}\n"
    # next to the answer cue, where truncation (which cuts a prompt's start) never reaches
    assert mixed._conditioned(["Scenario: x\nA. y\nChosen option:"], "risk=1") == [f"Scenario: x\nA. y\n{described}Chosen option:"]
    dev = [s for s in train_slice if s.dimension == "risk"][:3]
    picks = mixed.choose(dev, ["risk=1", "risk=-1", "risk=-1"])
    assert len(picks) == 3 and all(p.pole in (RISK.first.slug, RISK.second.slug) for p in picks)
    assert evaluate(mixed, dev, "select-one", progress=False).cases == 6
    assert mixed.choose([], "risk=1") == []
    with pytest.raises(PFTError, match="its one adapter has no per-dimension parts"):
        mixed.choose(dev, "risk=1", compose="dimensions")
    for write in (mixed.export, mixed.save_merged):  # one adapter for every vector: written alone it loses the preference
        with pytest.raises(PFTError, match="trained with --method conditioned: its preference lives in the prompt"):
            write("risk=1", tmp_path / "mix")
    assert not (tmp_path / "mix").exists()


def test_single_preference_training_holds_one_pole(base_dir, train_slice, tmp_path):
    risk = [s for s in train_slice if s.dimension == "risk"]
    zoo = _train(base_dir, risk, method="single", pole="Risk-averse")
    assert zoo.pole_slugs == ["risk-averse"] and zoo.training["method"] == "single"
    assert zoo.training["pole"] == "risk-averse" and zoo.training["rows"] == sum(len(s.options_of("risk-averse")) for s in risk)
    zoo.save_pretrained(tmp_path / "single")
    model, tokenizer = load_base(base_dir)
    mixed = MixedModel(Zoo.from_pretrained(tmp_path / "single"), model, tokenizer)
    assert len(mixed.choose(risk[:2], "risk=-1")) == 2
    with pytest.raises(PFTError, match="does not hold"):
        mixed.choose(risk[:2], "risk=1")
    result = evaluate(mixed, risk[:3], "select-one", progress=False)
    assert set(result.per_pole) == {"risk-averse"} and result.cases == 3
    with pytest.raises(PFTError, match="unknown --pole 'patient'"):
        _train(base_dir, risk, method="single", pole="patient")

