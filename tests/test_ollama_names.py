"""The names POST /api/pull takes (trayllm.ollama_names): trayllm's hub ids, Ollama's hf.co form and its
quantization tags, and Ollama library names refused with the form to use."""

from __future__ import annotations

import pytest

from trayllm.errors import HubNotFound, InvalidRequest
from trayllm.hub import HubId
from trayllm.ollama_names import PullTarget, pull_target

GGUF_REPO = [
    "README.md",
    "m.Q4_K_M.gguf",
    "m.Q8_0.gguf",
    "big-Q8_0-00001-of-00002.gguf",
    "big-Q8_0-00002-of-00002.gguf",
]


@pytest.mark.parametrize(
    ("name", "target"),
    [
        ("org/name", PullTarget(HubId("org/name"))),
        ("org/name@v1.0", PullTarget(HubId("org/name", "v1.0"))),
        ("org/name:m.Q8_0.gguf", PullTarget(HubId("org/name", gguf_file="m.Q8_0.gguf"))),
        ("org/name:latest", PullTarget(HubId("org/name"))),  # what some clients add to a name without a tag
        ("hf.co/org/name", PullTarget(HubId("org/name"))),
        ("HF.co/org/name:latest", PullTarget(HubId("org/name"))),
        ("huggingface.co/org/name:Q4_K_M", PullTarget(HubId("org/name"), "Q4_K_M")),
        ("hf.co/org/name:iq3_s-imat", PullTarget(HubId("org/name"), "iq3_s-imat")),
        ("hf.co/org/name:m.Q8_0.gguf", PullTarget(HubId("org/name", gguf_file="m.Q8_0.gguf"))),
        (" org/name@main:Q8_0 ", PullTarget(HubId("org/name"), "Q8_0")),
    ],
)
def test_hub_ids_and_ollamas_hugging_face_names(name: str, target: PullTarget) -> None:
    assert pull_target(name) == target


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("llama3.2", "is an Ollama library name"),
        ("qwen2.5:7b-instruct", "is an Ollama library name"),
        ("registry.ollama.ai/library/llama3:latest", "is no Hugging Face model name"),
        ("org/name:two words", "is no Hugging Face model name"),
        ("hf.co/org--x/name", "is no Hugging Face model name"),
    ],
)
def test_names_that_are_no_hub_id_are_refused_naming_the_forms(name: str, says: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        pull_target(name)
    assert says in caught.value.message and "org/name" in caught.value.message and caught.value.param == "model"


@pytest.mark.parametrize(
    ("name", "chosen"),
    [
        ("hf.co/org/g:q8_0", "m.Q8_0.gguf"),  # any case, the name's last part; a split GGUF is never one
        ("hf.co/org/g:Q4_K_M", "m.Q4_K_M.gguf"),
        ("hf.co/org/g", "m.Q4_K_M.gguf"),  # Ollama's default
        ("org/g:m.Q8_0.gguf", "m.Q8_0.gguf"),
    ],
)
def test_a_tag_chooses_the_gguf_file_of_its_quantization(name: str, chosen: str) -> None:
    assert pull_target(name).choose(GGUF_REPO) == HubId("org/g", gguf_file=chosen)


def test_a_repo_of_weights_or_one_gguf_is_left_to_the_engines_rule() -> None:
    weights = ["config.json", "model.safetensors", "model-Q4_K_M.gguf"]
    assert pull_target("hf.co/org/w").choose(weights) == HubId("org/w")  # safetensors before a GGUF
    assert pull_target("hf.co/org/one").choose(["only.Q2_K.gguf"]) == HubId("org/one")


@pytest.mark.parametrize(
    ("name", "listed", "message"),
    [
        ("hf.co/org/g:IQ2_XS", GGUF_REPO, "org/g has no GGUF file of quantization IQ2_XS; it has Q4_K_M, Q8_0"),
        (
            "hf.co/org/g",
            ["a.Q8_0.gguf", "a.Q5_K_M.gguf"],
            "org/g has several GGUF files and not one of quantization Q4_K_M, Ollama's default: add the one to "
            "pull as a tag, hf.co/org/g:QUANT, one of Q5_K_M, Q8_0",
        ),
        (
            "hf.co/org/g:Q8_0",
            ["a.Q8_0.gguf", "b.Q8_0.gguf"],
            "org/g has several GGUF files of quantization Q8_0; name one as org/g:FILE, one of: a.Q8_0.gguf, "
            "b.Q8_0.gguf",
        ),
        (
            "hf.co/org/w:Q4_K_M",
            ["config.json", "model.safetensors"],
            "org/w has no GGUF file, so none of quantization Q4_K_M; pull org/w without a tag for the weights it has",
        ),
    ],
)
def test_a_tag_with_no_single_file_is_not_found_naming_what_there_is(
    name: str, listed: list[str], message: str
) -> None:
    with pytest.raises(HubNotFound) as caught:
        pull_target(name).choose(listed)
    assert caught.value.message == message
