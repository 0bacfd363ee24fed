"""The shipped model's answer to one example question is what it was (tests/helpers/golden.py):
a refactor that changes what the model says, when it speaks or what it draws is caught here."""

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from flowomni.paths import SHIPPED_MODEL

from helpers.golden import GOLDEN, REGENERATE, answer, sha256


def test_the_shipped_model_answers_as_its_golden_file_says():
    with safe_open(str(GOLDEN), "pt") as f:
        meta = f.metadata()
    model = SHIPPED_MODEL / "model.safetensors"
    assert meta["model_sha256"] == sha256(model), (
        f"{GOLDEN.name} was made from another model than {model} (replaced?): check the new model's answer, "
        f"then regenerate it: {REGENERATE}"
    )
    want = load_file(str(GOLDEN))
    got, got_meta = answer(SHIPPED_MODEL)
    assert got_meta["text"] == meta["text"]
    for key in ("tokens", "gen", "speech_done"):  # the text, the speech states step by step
        assert torch.equal(got[key], want[key]), key
    assert want["gen"].sum() > 0
    torch.testing.assert_close(got["first_group"], want["first_group"], atol=1e-3, rtol=1e-3)
