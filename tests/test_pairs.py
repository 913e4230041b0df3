"""Your own value pairs: pair definition files, A/B behaviour items, conversion, and growing a zoo."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from pft_adapters.base import load_base
from pft_adapters.choose import choose
from pft_adapters.data import load_scenarios, to_paired, write_jsonl
from pft_adapters.errors import PFTError
from pft_adapters.extend import check_extension, extend_zoo
from pft_adapters.values import _DIMENSION_KEYS, _POLE_KEYS, _SLUG, ValueSpace, load_pairs
from pft_adapters.zoo import Zoo, sha256_file

from cli_runner import run, user_error
from conftest import TRAIN_DIMS, quick_config

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "patience"
N_TRAIN = 48  # of the example's 64 items; the last 16 are held out

PATIENCE = {
    "slug": "patience",
    "name": "Patience",
    "poles": [
        {"name": "Patient", "description": "Waits calmly."},
        {"name": "Impulsive", "description": "Acts on the first urge."},
    ],
}


def _write(tmp_path: Path, obj, name: str = "pairs.json") -> Path:
    path = tmp_path / name
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def example_space() -> ValueSpace:
    return load_pairs(EXAMPLE / "pairs.json")


@pytest.fixture(scope="module")
def items(example_space):
    return load_scenarios(EXAMPLE / "items.json", example_space, pair="patience")


# -- pair definition files ----------------------------------------------------------------------
def test_example_pair_file(example_space, capsys):
    dim = example_space.dimension("patience")
    assert (dim.first.slug, dim.second.slug) == ("patient", "impulsive")
    assert all(len(p.description.split()) >= 10 for p in dim.poles)
    code, out, _ = run(capsys, "pairs", "--check", EXAMPLE / "pairs.json")
    assert code == 0 and out.startswith("OK:") and "patience (patient / impulsive)" in out
    code, out, _ = run(capsys, "pairs", "--pairs", EXAMPLE / "pairs.json", "--json")
    listed = {d["slug"]: d for d in json.loads(out)["dimensions"]}
    assert list(listed)[:6] == [d.slug for d in ValueSpace.builtin()] and listed["patience"]["source"].endswith("pairs.json")
    assert [p["slug"] for p in listed["patience"]["poles"]] == ["patient", "impulsive"]


def _listing(space: ValueSpace, added_from: Path | None = None) -> list[str]:
    """The lines `pairs` prints for `space`: each dimension, then its poles with their sign and description."""
    builtin = ValueSpace.builtin().dimensions
    lines = []
    for dim in space:
        lines.append(f"{dim.slug}: {dim.label}" + ("" if dim in builtin else f"  (from {added_from})"))
        lines += [f"  {sign} {pole.slug:26s} {pole.description}" for pole, sign in zip(dim.poles, ("+1", "-1"))]
    return lines


def test_pairs_lists_the_dimensions_as_text(capsys, example_space):
    code, out, err = run(capsys, "pairs")
    assert code == 0 and err == ""
    builtin = ValueSpace.builtin()
    assert out.splitlines() == _listing(builtin)
    assert "risk: Risk Orientation" in out.splitlines() and len(out.splitlines()) == 3 * len(builtin.dimensions)
    code, out, _ = run(capsys, "pairs", "--pairs", EXAMPLE / "pairs.json")
    assert code == 0 and out.splitlines() == _listing(builtin.merged(example_space), EXAMPLE / "pairs.json")
    assert out.splitlines()[-3] == f"patience: Patience  (from {EXAMPLE / 'pairs.json'})"


def test_pairs_check_json_reports_a_bad_file_as_an_object_and_exits_1(tmp_path, capsys):
    candour = {"slug": "candour", "poles": [_pole("Candid"), _pole("Impulsive")]}
    bad = _write(tmp_path, {"dimensions": [PATIENCE, candour]}, "my-pairs.json")
    with pytest.raises(PFTError) as err:
        load_pairs(bad)
    code, out, stderr = run(capsys, "pairs", "--check", bad, "--json")
    assert code == 1 and stderr == ""  # the object is the whole report: no error line besides it
    assert json.loads(out) == {"file": str(bad), "ok": False, "error": str(err.value)}
    assert "dimension 2 ('candour'), pole 2: 'impulsive' is used twice" in json.loads(out)["error"]
    for broken, words in ((_write(tmp_path, '[{"slug": "patience"', "cut.json"), "not valid JSON"),
                          (tmp_path / "missing.json", "missing.json")):
        code, out, stderr = run(capsys, "pairs", "--check", broken, "--json")
        report = json.loads(out)
        assert code == 1 and stderr == "" and report["ok"] is False and report["file"] == str(broken), out
        assert words in report["error"]
    good = _write(tmp_path, [PATIENCE], "good.json")
    code, out, _ = run(capsys, "pairs", "--check", good, "--json")
    report = json.loads(out)
    assert code == 0 and report["ok"] is True and report["file"] == str(good)
    assert [(d["slug"], d["source"], [p["slug"] for p in d["poles"]]) for d in report["dimensions"]] == [
        ("patience", str(good), ["patient", "impulsive"])]


def _pole(name, **extra):
    return {"name": name, "description": "a pole", **extra}


@pytest.mark.parametrize(
    "dimensions, words",
    [
        ([{**PATIENCE, "poles": PATIENCE["poles"][:1]}], ["dimension 1 ('patience')", "exactly two poles", "got 1"]),
        ([{**PATIENCE, "poles": [PATIENCE["poles"][0], {"description": "x"}]}], ["dimension 1 ('patience'), pole 2", "'name'"]),
        ([{"name": "Patience", "poles": [_pole("Patient"), _pole("patient")]}], ["dimension 1", "same slug 'patient'"]),
        ([PATIENCE, {**PATIENCE, "name": "Waiting", "poles": [_pole("Calm"), _pole("Rash")]}],
         ["dimension 2 ('patience')", "'patience' is used twice", "dimension 1 ('patience')"]),
        ([PATIENCE, {"slug": "candour", "poles": [_pole("Candid"), _pole("Impulsive")]}],
         ["dimension 2 ('candour'), pole 2", "'impulsive' is used twice"]),
        ([PATIENCE, {"slug": "candour", "poles": [_pole("Candid"), _pole("Guarded", slug="patience")]}],
         ["dimension 2 ('candour')", "'patience' is used twice"]),
        ([{**PATIENCE, "slug": "risk"}], ["dimension 1 ('risk')", "clashes", "dimension 'risk'"]),
        ([{**PATIENCE, "slug": "waiting", "name": "Time Preference"}], ["dimension 1 ('waiting')", "'time-preference'", "clashes"]),
        ([{**PATIENCE, "poles": [_pole("Patient"), _pole("Risk-taking")]}], ["'risk-taking'", "clashes", "pole 'risk-taking'"]),
        ([{**PATIENCE, "poles": [_pole("Patient"), _pole("Rash", slug="competitive")]}], ["'competitive'", "clashes"]),
        ([{**PATIENCE, "descripton": "typo"}], ["dimension 1 ('patience')", "unknown field 'descripton'"]),
        ([{**PATIENCE, "poles": [_pole("Patient", colour="green"), _pole("Rash")]}], ["pole 1", "unknown field 'colour'"]),
        ([{**PATIENCE, "slug": "Patience!"}], ["not a valid slug"]),
        ([{**PATIENCE, "slug": "patience\n"}], ["dimension 1 ('patience\\n')", "'patience\\n' is not a valid slug"]),
        ([{**PATIENCE, "poles": [_pole("???"), _pole("Rash")]}], ["pole 1", "letter or digit"]),
        ([{**PATIENCE, "poles": [_pole("Patient", description=3), _pole("Rash")]}], ["pole 1", "'description'"]),
        ([], ["defines no dimensions"]),
    ],
)
def test_malformed_pair_files_are_refused_naming_the_record(tmp_path, capsys, dimensions, words):
    path = _write(tmp_path, {"dimensions": dimensions})
    with pytest.raises(PFTError) as err:
        load_pairs(path)
    for word in words:
        assert word in str(err.value), str(err.value)
    code, _, stderr = run(capsys, "pairs", "--check", path)  # the CLI prints the same one line
    assert code == 1 and stderr.strip() == f"error: {err.value}"


def test_pair_file_shapes_and_schema_agree(tmp_path):
    """The loader accepts the schema's three shapes, and checks the same keys and slug pattern."""
    for shape in ([PATIENCE], {"dimensions": [PATIENCE], "$schema": "x"}, PATIENCE):
        assert load_pairs(_write(tmp_path, shape)).dimension("patience").first.slug == "patient"
    with pytest.raises(PFTError, match="unknown field 'dims'"):
        load_pairs(_write(tmp_path, {"dimensions": [PATIENCE], "dims": []}))
    schema = json.loads((ROOT / "docs" / "pairs.schema.json").read_text(encoding="utf-8"))
    defs = schema["$defs"]
    assert set(defs["dimension"]["properties"]) == set(_DIMENSION_KEYS)
    assert set(defs["pole"]["properties"]) == set(_POLE_KEYS)
    assert defs["slug"]["pattern"] == _SLUG.pattern
    assert defs["dimension"]["required"] == ["poles"] and defs["pole"]["required"] == ["name"]
    assert defs["dimension"]["additionalProperties"] is False and defs["pole"]["additionalProperties"] is False



def test_names_in_any_script_and_names_that_cannot_be_told_apart(tmp_path):
    dim = {"name": "Терпение", "slug": "terpenie",
           "poles": [{"name": "Терпеливый", "slug": "terpelivyi"}, {"name": "Ölig", "description": "Impatient."}]}
    space = load_pairs(_write(tmp_path, [dim]))
    assert space.dimension("terpenie").label == "Терпение" and space.pole("olig").name == "Ölig"
    assert space.pole("terpelivyi").name == "Терпеливый" and space.dimension_of("Ölig").slug == "terpenie"
    nameless = {**dim, "poles": [{"name": "Терпеливый"}, dim["poles"][1]]}
    with pytest.raises(PFTError, match="pole 1: the name 'Терпеливый' has no Latin letter or digit to make a slug of: "
                                       "give the pole a 'slug'"):
        load_pairs(_write(tmp_path, [nameless]))
    with pytest.raises(PFTError, match="pole 'name' holds a control character or line break"):
        load_pairs(_write(tmp_path, [{**dim, "poles": [{"name": "Pa\ntient"}, dim["poles"][1]]}]))
    # a pole named like its own dimension: the file and the pole are named, not only the slug
    with pytest.raises(PFTError, match="pairs.json: dimension 1, pole 1: 'honesty' is used twice \\(also in dimension 1\\)"):
        load_pairs(_write(tmp_path, [{"name": "Honesty", "poles": [{"name": "Honesty"}, {"name": "Tact"}]}]))

# -- A/B behaviour items --------------------------------------------------------------------------
def _item(question="You may open a present now or tomorrow. What do you do?", a="Open it now.", b="Wait for tomorrow.",
          matching=" (B)", not_matching=" (A)"):
    return {"question": f"{question}\n\nChoices:\n (A) {a}\n (B) {b}\n\nAnswer:",
            "answer_matching_behavior": matching, "answer_not_matching_behavior": not_matching}


def test_ab_items_map_onto_the_pair(tmp_path, example_space):
    path = _write(tmp_path, [_item()], "ab.json")
    (s,) = load_scenarios(path, example_space, pair="patience")
    assert s.text == "You may open a present now or tomorrow. What do you do?"
    assert [(o.text, o.pole) for o in s.options] == [("Open it now.", "impulsive"), ("Wait for tomorrow.", "patient")]
    (swapped,) = load_scenarios(path, example_space, pair="patience", matching="impulsive")
    assert [o.pole for o in swapped.options] == ["patient", "impulsive"]


@pytest.mark.parametrize(
    "record, words",
    [
        (_item(matching=" (C)"), ["record 2", "'answer_matching_behavior'", "(C) is not among the question's choices (A), (B)"]),
        (_item(not_matching=["(D)"]), ["record 2", "'answer_not_matching_behavior'", "(D)"]),
        (_item(matching=" (A)"), ["record 2", "(A) is both"]),
        (_item(matching="yes"), ["record 2", "'yes'", "not a choice letter"]),
        (_item(matching=" (A"), ["record 2", "' (A'", "not a choice letter"]),  # a parenthesis opened is closed
        (_item(matching=" " * 100_000 + "!"), ["record 2", "not a choice letter"]),  # read in linear time
        ({"question": "Wait or not?", "answer_matching_behavior": " (A)", "answer_not_matching_behavior": " (B)"},
         ["record 2", "lettered choices"]),
        ({k: v for k, v in _item().items() if k != "answer_not_matching_behavior"}, ["record 2", "'answer_not_matching_behavior'"]),
        (_item(question=""), ["record 2", "put the situation or question before them"]),
    ],
)
def test_malformed_ab_items_are_refused_naming_the_record(tmp_path, example_space, record, words):
    path = _write(tmp_path, [_item(), record], "ab.json")
    with pytest.raises(PFTError) as err:
        load_scenarios(path, example_space, pair="patience")
    for word in ["ab.json", *words]:
        assert word in str(err.value), str(err.value)


def test_ab_items_need_a_pair(tmp_path, capsys, example_space):
    path = _write(tmp_path, [_item()], "ab.json")
    with pytest.raises(PFTError, match=r"ab.json, record 1: .*--pair"):
        load_scenarios(path, example_space)
    err = user_error(capsys, "convert", "vcd", path, "--out", tmp_path / "ab.jsonl")  # a command without --pair
    assert "convert the file with `pft-adapters convert ab --pair SLUG`" in err and "name it with --pair" not in err
    with pytest.raises(PFTError, match="not a pole of 'patience'"):
        load_scenarios(path, example_space, pair="patience", matching="risk-averse")


# -- convert --------------------------------------------------------------------------------------
def test_convert_ab_round_trip(tmp_path, capsys, items, example_space):
    out = tmp_path / "patience.jsonl"
    code, stdout, _ = run(capsys, "convert", "ab", EXAMPLE / "items.json", "--pairs", EXAMPLE / "pairs.json",
                          "--out", out, "--json")
    assert code == 0 and json.loads(stdout)["records_out"] == len(items) == 64
    first = json.loads(out.read_text(encoding="utf-8").splitlines()[0])
    assert set(first) == {"prompt", "responses", "dimension"} and set(first["responses"]) == {"patient", "impulsive"}
    assert load_scenarios(out, example_space) == items  # same texts, dimension, options, poles and order
    assert sum(s.options[s.options_of("patient")[0]] == s.options[0] for s in items) == 32  # both letters used
    assert run(capsys, "convert", "ab", EXAMPLE / "items.json", "--pairs", EXAMPLE / "pairs.json", "--out", out)[0] == 1
    assert not list(tmp_path.glob(".*partial"))


def test_convert_reports_every_bad_record_and_writes_nothing(tmp_path, capsys, example_space):
    source = _write(tmp_path, [_item(), _item(matching=" (C)"), _item(), {"question": "no choices"}], "ab.json")
    out = tmp_path / "x.jsonl"
    code, _, err = run(capsys, "convert", "ab", source, "--pairs", EXAMPLE / "pairs.json", "--out", out)
    assert code == 1 and "2 bad record(s)" in err and "record 2" in err and "record 4" in err and not out.exists()


def test_convert_vcd_keeps_every_option(tmp_path, vcd_dev):
    scenarios = load_scenarios(vcd_dev)[:40]
    out = write_jsonl([r for s in scenarios for r in to_paired(s)], tmp_path / "vcd.jsonl")
    back = load_scenarios(out)
    assert len(back) == sum(max(len(s.options_of(p)) for p in {o.pole for o in s.options if o.pole}) for s in scenarios)
    by_text: dict[str, set] = {}
    for s in back:
        by_text.setdefault(s.text, set()).update((o.text, o.pole) for o in s.options)
    for s in scenarios:
        assert by_text[s.text] == {(o.text, o.pole) for o in s.options}
    simple = [s for s in scenarios if len(s.options) == 2]
    assert simple and all(load_scenarios(write_jsonl(to_paired(s), tmp_path / "one.jsonl"))[0] == s for s in simple)


# -- extend ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def grown(zoo_dir, items, example_space, vcd_dev, tmp_path_factory):
    """The risk/time zoo extended with the example pair, trained on the first 48 items, saved."""
    zoo = Zoo.from_pretrained(zoo_dir)
    model, tokenizer = zoo.load_base()
    old_dev = [s for s in load_scenarios(vcd_dev) if s.dimension in TRAIN_DIMS][:20]
    result = extend_zoo(zoo, model, tokenizer, items[:N_TRAIN], example_space.select(["patience"]),
                        quick_config(epochs=8, lr=5e-3), old_data=old_dev, progress=False)
    path = result.zoo.save_pretrained(tmp_path_factory.mktemp("grown") / "zoo2")
    return result, path


def test_extend_trains_new_poles_with_the_zoos_adapter_dropout(zoo_dir, items, example_space, tmp_path):
    """The new poles train under the zoo's lora_dropout (what every pole's adapter_config.json states), on rows
    as long as the zoo's own unless the config says otherwise."""
    zoo = Zoo.from_pretrained(zoo_dir)
    new = example_space.select(["patience"])

    def grown(rate: float) -> Zoo:
        zoo.training["lora_dropout"] = rate
        model, tokenizer = zoo.load_base()
        config = quick_config(epochs=1, head_steps=5, max_length=None)
        return extend_zoo(zoo, model, tokenizer, items[:8], new, config, progress=False).zoo

    plain, dropped = grown(0.0), grown(0.5)
    assert plain.training["extensions"][-1]["max_length"] == zoo.max_length == 256  # not the kind's default, 512
    assert not all(torch.equal(dropped.poles["patient"][k], v) for k, v in plain.poles["patient"].items())
    saved = dropped.save_pretrained(tmp_path / "grown")
    for pole in ("risk-averse", "patient"):  # old and new poles alike
        assert json.loads((saved / "poles" / pole / "adapter_config.json").read_text())["lora_dropout"] == 0.5


def test_extend_keeps_old_pole_files_byte_identical(zoo_dir, grown):
    result, path = grown
    old = Zoo.from_pretrained(zoo_dir)
    for pole in old.pole_slugs:
        for name in ("adapter_model.safetensors", "adapter_config.json"):
            assert sha256_file(zoo_dir / "poles" / pole / name) == sha256_file(path / "poles" / pole / name), (pole, name)
    grown_zoo = Zoo.from_pretrained(path)
    assert grown_zoo.pole_slugs == old.pole_slugs + ["patient", "impulsive"]
    assert [d.slug for d in grown_zoo.space] == [*TRAIN_DIMS, "patience"] and grown_zoo.base == old.base
    (entry,) = grown_zoo.training["extensions"]
    assert entry["dimensions"] == ["patience"] and entry["scenarios"] == N_TRAIN
    report = entry["head"]
    assert report["new_examples"] > 0 and report["old_examples"] > 0
    assert report["old_pole_accuracy"] == report["old_pole_accuracy_before"]  # old poles are read as before
    # the head reads old poles exactly as before: same standardisation, same rows
    head = grown_zoo.head
    assert head is not None and old.head is not None
    assert head.pole_slugs[:4] == old.head.pole_slugs and head.dimension_slugs == [*old.head.dimension_slugs, "patience"]
    assert torch.equal(head.mean, old.head.mean) and torch.equal(head.std, old.head.std)
    assert torch.equal(head.poles.weight[:4], old.head.poles.weight) and torch.equal(head.dimensions.bias[:2], old.head.dimensions.bias)


def test_extended_zoo_chooses_the_right_pole_on_held_out_items(grown, base_dir, items):
    """Measured: 24 of 32 held-out choices right (0.75: patient 12/16 under patient=1, impulsive 12/16
    under impulsive=1) on the fixture's tiny base built on a quiet machine (about 230 pre-training
    steps). The base is pre-trained for a fixed time, so a loaded machine gives a weaker one: over
    bases of 9 to 630 steps and seeds 0-2 the rate ranged 21-25 of 32 (0.66-0.78). Chance is 0.5."""
    result, _ = grown
    held = items[N_TRAIN:]
    model, tokenizer = load_base(base_dir)
    adapters = result.zoo.attach(model)
    right, patient_picks = 0, {}
    for pole in ("patient", "impulsive"):
        choices = choose(adapters, tokenizer, held, {pole: 1.0})
        right += sum(c.pole == pole for c in choices)
        patient_picks[pole] = sum(c.pole == "patient" for c in choices)
    assert right / (2 * len(held)) >= 0.625, (right, patient_picks)
    assert patient_picks["patient"] - patient_picks["impulsive"] >= 3, patient_picks  # the vector moves the choice


def test_old_poles_choose_as_before_after_extending(grown, zoo_dir, base_dir, vcd_dev):
    """Their adapters are identical, so the same VCD choices come out, score for score."""
    _, path = grown
    dev = load_scenarios(vcd_dev)
    slices = {pole: [s for s in dev if s.dimension == dim][:5] for pole, dim in (("risk-averse", "risk"), ("delayed-gratification", "time"))}
    runs = []
    for zoo in (Zoo.from_pretrained(zoo_dir), Zoo.from_pretrained(path)):
        model, tokenizer = load_base(base_dir)
        adapters = zoo.attach(model)
        runs.append([choose(adapters, tokenizer, scenarios, {pole: 1.0}) for pole, scenarios in slices.items()])
    for before, after in zip(*runs):
        assert [c.index for c in before] == [c.index for c in after]
        assert all(a.scores == pytest.approx(b.scores, abs=1e-4) for a, b in zip(before, after))


def test_extend_cli_and_refusals(tmp_path, capsys, zoo_dir, vcd_dev):
    """The CLI on A/B input with --old-data; a dimension the zoo already has is refused."""
    small = _write(tmp_path, json.loads((EXAMPLE / "items.json").read_text(encoding="utf-8"))[:8], "few.json")
    old = _write(tmp_path, [r for r in json.loads(vcd_dev.read_text(encoding="utf-8"))
                            if r["preference domain"] == "Risk Orientation"][:4], "old.json")
    out = tmp_path / "zoo2"
    code, stdout, err = run(capsys, "extend", zoo_dir, "--pairs", EXAMPLE / "pairs.json", "--data", small,
                            "--old-data", old, "--epochs", "1", "--out", out, "--json")
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["added_poles"] == ["patient", "impulsive"]
    assert summary["head"]["old_pole_accuracy"] == summary["head"]["old_pole_accuracy_before"] is not None
    # the new poles train at the length the zoo scores rows at, unless --max-length says otherwise
    own = json.loads((zoo_dir / "pft_zoo.json").read_text())["training"]["max_length"]
    assert json.loads((out / "pft_zoo.json").read_text())["training"]["extensions"][-1]["max_length"] == own
    assert re.fullmatch(r"[0-9a-f]{64}", sha256_file(out / "poles" / "patient" / "adapter_model.safetensors"))
    assert sha256_file(out / "poles" / "risk-averse" / "adapter_model.safetensors") == sha256_file(
        zoo_dir / "poles" / "risk-averse" / "adapter_model.safetensors")
    assert "already has 'risk'" in user_error(capsys, "extend", zoo_dir, "--data", old, "--dims", "risk", "--out", tmp_path / "z3")
    conditioned = shutil.copytree(zoo_dir, tmp_path / "conditioned")  # one shared adapter: new poles would go unused
    manifest = json.loads((conditioned / "pft_zoo.json").read_text())
    manifest["training"]["method"] = "conditioned"
    (conditioned / "pft_zoo.json").write_text(json.dumps(manifest))
    err = user_error(capsys, "extend", conditioned, "--pairs", EXAMPLE / "pairs.json", "--data", small, "--out", tmp_path / "z4")
    assert "trained with --method conditioned" in err and not (tmp_path / "z4").exists()


def test_extend_checks_its_inputs_before_the_base_loads(tmp_path, capsys, zoo_dir, items, example_space, monkeypatch):
    """As `train` does: poles that would be written untrained, a dimension named twice, one the zoo has, and
    an --overwrite that would delete an input are all refused before the (slow) base model loads."""
    monkeypatch.setattr(Zoo, "load_base", lambda *_, **__: pytest.fail("the base loaded before the inputs were checked"))
    two = _write(tmp_path, [PATIENCE, {"slug": "candour", "poles": [_pole("Candid"), _pole("Guarded")]}])
    args = ("extend", zoo_dir, "--pairs", two, "--pair", "patience", "--data", EXAMPLE / "items.json")
    err = user_error(capsys, *args, "--dims", "patience,candour", "--out", tmp_path / "z1")
    assert "holds no scenarios of candour: its poles would be written untrained" in err
    with pytest.raises(PFTError, match="holds no scenarios of candour"):  # the Python API refuses the same
        check_extension(Zoo.from_pretrained(zoo_dir), items, load_pairs(two).select(["patience", "candour"]))
    err = user_error(capsys, *args, "--dims", "patience,Patience", "--out", tmp_path / "z2")
    assert "dimension 'patience' is named twice (as 'patience' and 'Patience')" in err
    assert "already has 'risk'" in user_error(capsys, *args, "--dims", "risk", "--out", tmp_path / "z3")
    out = tmp_path / "zoo2"  # every input inside --out: --overwrite would delete it
    (out / "base").mkdir(parents=True)
    inputs = {"--dev": out / "dev.json", "--old-data": out / "old.json", "--pairs": out / "pairs.json", "--base": out / "base"}
    for option, path in inputs.items():
        if option != "--base":
            shutil.copy(EXAMPLE / ("pairs.json" if option == "--pairs" else "items.json"), path)
        given = {"--pairs": EXAMPLE / "pairs.json", option: path}
        err = user_error(capsys, "extend", zoo_dir, "--data", EXAMPLE / "items.json", "--out", out, "--overwrite",
                         *(x for pair in given.items() for x in pair))
        assert f"--out {out} holds {path}, which this command reads" in err and path.exists()
    moved = shutil.copytree(zoo_dir, tmp_path / "moved")  # the zoo's own base, named in its manifest, is read too
    manifest = json.loads((moved / "pft_zoo.json").read_text())
    manifest["base_model"]["id"] = str(out / "base")
    (moved / "pft_zoo.json").write_text(json.dumps(manifest))
    err = user_error(capsys, "extend", moved, "--data", EXAMPLE / "items.json", "--pairs", EXAMPLE / "pairs.json",
                     "--out", out, "--overwrite")
    assert f"--out {out} holds {out / 'base'}, which this command reads" in err and (out / "base").is_dir()
    monkeypatch.setattr(Zoo, "from_pretrained", lambda *_, **__: pytest.fail("the zoo was read before --out was checked"))
    (tmp_path / "a-file").write_text("")
    assert "a-file" in user_error(capsys, *args, "--out", tmp_path / "a-file")


def test_data_for_a_zoo_reads_its_dimensions_as_the_zoo_words_them(tmp_path):
    """A zoo trained when a built-in dimension was worded otherwise keeps working (its wording wins); a --pairs
    file that defines one of the zoo's own dimensions otherwise is refused, naming both sides."""
    from dataclasses import replace

    from pft_adapters_cli.commands.common import value_space
    from pft_adapters.values import data_space

    risk = ValueSpace.builtin().dimension("risk")
    older = replace(risk, first=replace(risk.first, description="Older words for taking chances."))
    space = data_space(ValueSpace([older]), value_space(None))
    assert space.dimension("risk") == older and space.has_dimension("time")
    pairs = value_space(EXAMPLE / "pairs.json")
    patience = next(d for d in pairs if not ValueSpace.builtin().has_dimension(d.slug))
    assert data_space(ValueSpace([older, patience]), pairs).dimension(patience.slug) == patience
    reworded = replace(patience, first=replace(patience.first, description="Other words."))
    with pytest.raises(PFTError, match=f"the zoo and --pairs define dimension '{patience.slug}' differently .*drop the "
                                       "dimension from --pairs or match the zoo's definition"):
        data_space(ValueSpace([older, reworded]), pairs)
