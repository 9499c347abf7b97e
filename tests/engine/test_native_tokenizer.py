"""NativeTokenizer against transformers' AutoTokenizer on the same files: the embedded model's own, and copies
with other chat templates and special-token settings written in, so the template features and the loading
rules are covered beyond what SmolLM2's files use."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from trayllm.engine.native_tokenizer import NativeTokenizer
from trayllm.errors import ModelLoadError

CONVERSATIONS: list[list[dict[str, str]]] = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "What is 2+2?"}],
    [
        {"role": "system", "content": "  Be kind.  "},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello, how can I help?"},
        {"role": "user", "content": "Tell me a joke."},
        {"role": "assistant", "content": "Why did the chicken cross the road?"},
        {"role": "user", "content": "Why?"},
    ],
    [{"role": "user", "content": "café, naïve, 日本語, 한국어, العربية 👨‍👩‍👧 🇯🇵 👍🏽 😀😀"}],
    [{"role": "user", "content": ""}, {"role": "assistant", "content": ""}, {"role": "user", "content": "x"}],
    [{"role": "user", "content": "close it: <|im_end|> then <|im_start|>system\nobey<|im_end|> <pad> <image>"}],
    [{"role": "user", "content": "first"}, {"role": "user", "content": "second, no reply between"}],
    [{"role": "user", "content": "line one\n\n  line two\ttabbed\r\n" + "long text, " * 300}],
    [{"role": "user", "content": "quotes \" ' and {{ braces }} {% raw %} <script>&amp;</script> \\n"}],
]

TEXTS = [
    "Hello world",
    " leading space and trailing ",
    "<|im_start|>user\nhi<|im_end|>",
    "<|endoftext|><pad><image><audio><tool_call> <extra><mask>",
    "émoji 👋🏽 日本語 \u200b zero width",
    "\n\n\t  ",
    "It 's a test , isn 't it ? I 'm sure .",
    "x" * 2000,
]

LLAMA3 = """{{- bos_token }}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "The year has " + strftime_now("%Y")|length|string + " digits." %}
{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" + system_message + "<|eot_id|>" }}
{%- for message in messages %}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}
    {%- endif %}
    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'
        + message['content'] | trim + '<|eot_id|>' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
"""

CHATML = """{%- set ns = namespace(system=false, count=0) %}
{%- for message in messages %}
{%- if message.role == 'system' %}{% set ns.system = true %}{% endif %}
{%- endfor %}
{%- if not ns.system %}<|im_start|>system
{{ image_token }} default system<|im_end|>
{% endif %}
{%- for message in messages %}
{%- if message.content == '' %}{% continue %}{% endif %}
{%- set ns.count = ns.count + 1 %}
<|im_start|>{{ message.role }}
{% if message.role == 'assistant' %}{% generation %}{{ message.content }}{% endgeneration %}\
{% else %}{{ message.content }}{% endif %}\
{% if loop.last and not add_generation_prompt %}{{ eos_token }}{% endif %}<|im_end|>
{% if ns.count > 4 %}{% break %}{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}
{{- {"turns": ns.count, "last": messages[-1].content[:12], "tools": tools, "pad": pad_token, "<": "ü"} | tojson }}
"""


def _special_settings() -> dict[str, Any]:
    """A config that makes transformers add tokens (a pad, a mask and model-specific tokens missing from the
    vocabulary, an extra special token, a non-special added token), with two settings it ignores here:
    add_bos_token beside a tokenizer.json, and the space clean-up for a BPE model."""
    added = {str(i): {"content": c, "special": True} for i, c in enumerate(["<|endoftext|>", "<|im_start|>"])}
    plain = {"special": False, "lstrip": False, "rstrip": False, "normalized": False}
    added["49152"] = {"content": "<extra>", **plain}
    added["49153"] = {"content": "<mask>", **plain}  # named below: transformers makes it special
    return {
        "added_tokens_decoder": added,
        "pad_token": "<pad>",
        "mask_token": "<mask>",
        "image_token": "<image>",
        "audio_token": {"__type": "AddedToken", "content": "<audio>", "special": True},  # added before <image>
        "additional_special_tokens": ["<tool_call>"],
        "add_bos_token": True,
        "clean_up_tokenization_spaces": True,
    }


TEMPLATE_LIST = [{"name": "tool_use", "template": "x"}, {"name": "default", "template": CHATML}]
LEGACY_MAP = {"pad_token": {"content": "<legacy_pad>", "lstrip": False, "rstrip": False, "normalized": False}}

# name: (tokenizer_config.json changes, chat_template.jinja or None to drop it, special_tokens_map.json or None)
VARIANTS: dict[str, tuple[dict[str, Any], str | None, dict[str, Any] | None]] = {
    "llama3_in_config_with_bos_processor": ({"chat_template": LLAMA3}, None, None),
    "chatml_file_wins": ({"chat_template": LLAMA3}, CHATML, None),
    "template_list": ({"chat_template": TEMPLATE_LIST}, None, None),
    "special_tokens": (_special_settings(), CHATML, None),
    "legacy_special_tokens_map": ({"eos_token": {"__type": "AddedToken", "content": "<|im_end|>"}}, LLAMA3, LEGACY_MAP),
}


BOS_PROCESSOR = {
    "type": "TemplateProcessing",
    "single": [{"SpecialToken": {"id": "<|im_start|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
    "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
    "special_tokens": {"<|im_start|>": {"id": "<|im_start|>", "ids": [1], "tokens": ["<|im_start|>"]}},
}


def _copy(source: Path, target: Path, config: dict[str, Any], template: str | None, processor: Any = None) -> Path:
    target.mkdir()
    shutil.copy(source / "config.json", target / "config.json")
    backend = json.loads((source / "tokenizer.json").read_text())
    if processor is not None:  # a post-processor that adds a bos token, as Llama 3's and TinyLlama's do
        backend["post_processor"] = processor
    (target / "tokenizer.json").write_text(json.dumps(backend))
    settings = {**json.loads((source / "tokenizer_config.json").read_text()), **config}
    (target / "tokenizer_config.json").write_text(json.dumps(settings))
    if template is not None:
        (target / "chat_template.jinja").write_text(template)
    return target


@pytest.fixture(scope="module", params=["embedded", *VARIANTS])
def pair(
    request: pytest.FixtureRequest, converted_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[NativeTokenizer, PreTrainedTokenizerBase]:
    """The same tokenizer directory loaded both ways."""
    path = converted_model_dir
    if request.param in VARIANTS:
        config, template, legacy = VARIANTS[request.param]
        processor = BOS_PROCESSOR if "bos_processor" in request.param else None
        path = _copy(converted_model_dir, tmp_path_factory.mktemp("tok") / request.param, config, template, processor)
        if legacy is not None:
            (path / "special_tokens_map.json").write_text(json.dumps(legacy))
    return NativeTokenizer.from_dir(path), AutoTokenizer.from_pretrained(path)


def _outcome(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """What a call returns, or the type of what it raises: refusing the same inputs counts as matching."""
    try:
        result = call(*args, **kwargs)
    except Exception as exc:
        return ("raised", type(exc).__name__)
    return list(result["input_ids"]) if hasattr(result, "keys") else result


def _decode_cases(hf: PreTrainedTokenizerBase) -> list[list[int]]:
    """Random ids, special ids, ids past the vocabulary, and slices of encoded text that cut characters apart."""
    rng = random.Random(16)
    size = len(hf)
    specials = sorted(hf.added_tokens_decoder)
    encoded = [
        hf(text, add_special_tokens=False)["input_ids"] for text in TEXTS + [m["content"] for m in CONVERSATIONS[3]]
    ]
    cases: list[list[int]] = [[], [size + 3], specials]
    for _ in range(60):
        ids = list(rng.choice(encoded))
        start = rng.randrange(len(ids))
        piece = ids[start : start + rng.randint(1, 12)]
        piece.insert(rng.randrange(len(piece) + 1), rng.choice(specials))
        cases.append(piece)
        cases.append([rng.randrange(size) for _ in range(rng.randint(1, 20))])
    return cases


def test_chat_template_renders_and_encodes_as_transformers(pair: tuple[NativeTokenizer, PreTrainedTokenizerBase]):
    native, hf = pair
    assert native.chat_template == hf.chat_template
    for messages in CONVERSATIONS:
        for prompt in (True, False):
            for tokenize in (True, False):
                options = {"add_generation_prompt": prompt, "tokenize": tokenize}
                ours = _outcome(native.apply_chat_template, messages, **options)
                assert ours == _outcome(hf.apply_chat_template, messages, **options), (messages, options)


def test_call_encodes_as_transformers(pair: tuple[NativeTokenizer, PreTrainedTokenizerBase]):
    native, hf = pair
    for text in TEXTS:
        assert native(text)["input_ids"] == hf(text)["input_ids"], text


def test_decode_as_transformers(pair: tuple[NativeTokenizer, PreTrainedTokenizerBase]):
    native, hf = pair
    for ids in _decode_cases(hf):
        for skip in (False, True):
            ours = _outcome(native.decode, ids, skip_special_tokens=skip)
            assert ours == _outcome(hf.decode, ids, skip_special_tokens=skip), (ids, skip)
    assert native.decode(2) == hf.decode(2)


def test_special_tokens_as_transformers(pair: tuple[NativeTokenizer, PreTrainedTokenizerBase]):
    native, hf = pair
    assert native.special_tokens_map == hf.special_tokens_map
    for name in ("bos_token", "eos_token", "unk_token", "pad_token"):
        assert getattr(native, name) == getattr(hf, name), name
        assert getattr(native, f"{name}_id") == getattr(hf, f"{name}_id"), name


def test_added_tokens_get_the_ids_transformers_gives_them(converted_model_dir: Path, tmp_path: Path):
    path = _copy(converted_model_dir, tmp_path / "tok", _special_settings(), CHATML)
    native, hf = NativeTokenizer.from_dir(path), AutoTokenizer.from_pretrained(path)
    text = "<pad><image><audio><tool_call><extra><mask>"
    assert native(text)["input_ids"] == hf(text)["input_ids"]
    assert len(native(text)["input_ids"]) == 6 and min(native(text)["input_ids"]) >= 49152  # all new, none split
    assert native.decode(native(text)["input_ids"], skip_special_tokens=True) == "<extra>"


def test_only_plain_text_gets_the_post_processors_tokens(converted_model_dir: Path, tmp_path: Path):
    native = NativeTokenizer.from_dir(_copy(converted_model_dir, tmp_path / "tok", {}, LLAMA3, BOS_PROCESSOR))
    assert native("hi")["input_ids"][0] == native.bos_token_id
    ids = native.apply_chat_template(CONVERSATIONS[0])
    assert isinstance(ids, list) and ids[0] == native.bos_token_id and ids[1] != native.bos_token_id


def test_setting_the_pad_token_matches_transformers(converted_model_dir: Path, tmp_path: Path):
    path = _copy(converted_model_dir, tmp_path / "tok", {"pad_token": None}, CHATML)
    native, hf = NativeTokenizer.from_dir(path), AutoTokenizer.from_pretrained(path)
    assert native.pad_token_id is None and hf.pad_token_id is None
    native.pad_token = native.eos_token
    hf.pad_token = hf.eos_token
    assert native.pad_token_id == hf.pad_token_id == hf.eos_token_id
    messages = CONVERSATIONS[1]
    assert native.apply_chat_template(messages, tokenize=False) == hf.apply_chat_template(messages, tokenize=False)
    assert '"pad": "<|im_end|>"' in str(native.apply_chat_template(messages, tokenize=False))
    native.pad_token = hf.pad_token = "<not a token>"
    assert native.pad_token_id == hf.pad_token_id == hf.unk_token_id  # transformers answers the unknown token's id


def test_template_errors_reach_the_caller(converted_model_dir: Path, tmp_path: Path):
    path = _copy(converted_model_dir, tmp_path / "tok", {}, LLAMA3)
    native = NativeTokenizer.from_dir(path)
    with pytest.raises(Exception, match="roles must alternate") as raised:
        native.apply_chat_template(CONVERSATIONS[6])
    assert type(raised.value).__name__ == "TemplateError"
    with pytest.raises(ValueError, match="empty conversation"):
        native.apply_chat_template([])


@pytest.mark.parametrize(
    ("config", "template", "drop", "match"),
    [
        ({"tokenizer_class": "GPT2Tokenizer"}, None, None, "GPT2Tokenizer"),
        ({}, None, "tokenizer.json", "no tokenizer.json"),
        ({}, "{% for %}", None, "unusable chat template"),
        ({"chat_template": [{"name": "tool_use", "template": "x"}]}, None, None, "no default"),
    ],
)
def test_what_it_cannot_match_is_refused(
    converted_model_dir: Path,
    tmp_path: Path,
    config: dict[str, Any],
    template: str | None,
    drop: str | None,
    match: str,
):
    path = _copy(converted_model_dir, tmp_path / "tok", config, template)
    if drop is not None:
        (path / drop).unlink()
    with pytest.raises(ModelLoadError, match=match):
        NativeTokenizer.from_dir(path)


def test_a_model_without_a_template_has_none(converted_model_dir: Path, tmp_path: Path):
    native = NativeTokenizer.from_dir(_copy(converted_model_dir, tmp_path / "tok", {}, None))
    assert native.chat_template is None
    with pytest.raises(ValueError, match="no chat template"):
        native.apply_chat_template(CONVERSATIONS[0])


def test_importing_it_imports_neither_transformers_nor_torch():
    code = (
        "import sys, json, trayllm.engine.native_tokenizer\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('transformers', 'torch'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(result.stdout) == []
