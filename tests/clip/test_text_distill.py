"""TinyCLIP on text through the real CLI (`pocketvit distill-text`), tiny local teacher, real sentences."""

from __future__ import annotations

import json

from pocketvit.clip.corpus import HELDOUT_MODULES, TRAIN_MODULES, docstring_sentences, text_corpus
from typer.testing import CliRunner


def test_corpus_is_real_prose_and_the_held_out_side_comes_from_other_modules():
    train, held = text_corpus()
    assert len(train) > 1000 and len(held) > 300
    assert not set(train) & set(held) and not set(TRAIN_MODULES) & set(HELDOUT_MODULES)
    assert all(6 <= len(s.split()) <= 40 and s[-1] in ".!?" for s in docstring_sentences(("json",)))


def test_distill_text_cli_inherits_distils_and_reports(tiny_text_folder, tmp_path):
    from pocketvit.cli.main import app

    out = tmp_path / "ts"
    r = CliRunner().invoke(app, ["distill-text", "--teacher", f"hf:{tiny_text_folder}", "--layers", "2", "--epochs",
                                 "2", "--lr", "0.002", "--batch-size", "32", "--train-limit", "192",
                                 "--heldout-limit", "64", "--out", str(out)])
    assert r.exit_code == 0, r.output
    rep = json.loads((out / "text_student.json").read_text())
    inh, rnd = rep["inherited"], rep["random"]
    assert inh["kept_layers"] == [0, 3] and inh["params"] == rnd["params"]
    assert inh["heldout_cosine_before"] > rnd["heldout_cosine_before"]  # inheritance starts close to the teacher
    assert inh["heldout_cosine_after"] > inh["heldout_cosine_before"]  # and distillation brings it closer
    assert rep["sentences"] == {**rep["sentences"], "train": 192, "heldout": 64}
    # the distilled student is itself a sentence encoder folder
    from pocketvit.models.text import load_text_encoder

    student = load_text_encoder(f"hf:{out / 'student'}")
    assert student.model.config.num_hidden_layers == 2 and student.encode(["a bag."]).shape == (1, 32)


def test_distill_text_cli_names_a_bad_teacher(tmp_path):
    from pocketvit.cli.main import app

    r = CliRunner().invoke(app, ["distill-text", "--teacher", "gpt", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "unknown text encoder 'gpt'" in r.output
