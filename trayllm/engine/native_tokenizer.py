"""The model's tokenizer and chat template with only ``tokenizers`` and jinja2: the CPU path without transformers.

Importing transformers' AutoTokenizer costs about two seconds of a start that should be ready in three (it
pulls in torch._dynamo, torch.distributed.tensor and sympy). What the engine asks of a tokenizer is small:
render the chat template, encode text, decode ids, and name the eos and pad tokens. This module does that
for the files transformers' ``TokenizersBackend`` (alias ``PreTrainedTokenizerFast``) loads from a
directory, following transformers 5's own loading steps (tokenization_utils_base._from_pretrained and
TokenizersBackend.__init__) and its chat-template environment (utils/chat_template_utils.py), so the ids and
text are the same (tests/engine/test_native_tokenizer.py compares them with AutoTokenizer's).

What it refuses with ModelLoadError, so a caller falls back to transformers: a directory without
tokenizer.json, a model-specific tokenizer class (transformers rebuilds those from the vocabulary with its
own pipeline), the legacy added_tokens.json and versioned tokenizer files, and a chat template that does not
compile or offers no default. AutoTokenizer can also override a directory's class from config.json's
model_type (its MODELS_WITH_INCORRECT_HUB_TOKENIZER_CLASS: qwen2, phi3, ...); that table is not copied here,
so only use this for model types it does not list (the Llama family).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2.exceptions
import jinja2.ext
import jinja2.nodes
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import AddedToken, Tokenizer

from trayllm.errors import ModelLoadError

# transformers' SPECIAL_TOKENS_ATTRIBUTES: the named special tokens, in its order
NAMED_TOKENS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
# tokenizer_config.json's tokenizer_class values AutoTokenizer loads as TokenizersBackend straight from tokenizer.json
BACKEND_CLASSES = frozenset({"TokenizersBackend", "PreTrainedTokenizerFast", "BloomTokenizer", "BloomTokenizerFast"})

Token = str | AddedToken
ChatTemplate = str | dict[str, str]


class NativeTokenizer:
    """Encode, decode and render chat templates exactly as transformers' TokenizersBackend does for the same files."""

    def __init__(
        self,
        backend: Tokenizer,
        specials: dict[str, Token],
        chat_template: ChatTemplate | None,
        clean_up_spaces: bool,
    ) -> None:
        self._backend = backend
        self._specials = specials  # named special tokens, model-specific names (image_token, ...) included
        self.chat_template = chat_template
        self._clean_up_spaces = clean_up_spaces
        self._template = _compile(_default_template(chat_template)) if chat_template is not None else None

    @classmethod
    def from_dir(cls, path: Path) -> NativeTokenizer:
        """Load the tokenizer saved in ``path`` (tokenizer.json, tokenizer_config.json and chat templates)."""
        config = _read_json(path / "tokenizer_config.json")
        kind = config.get("tokenizer_class")
        if kind is not None and kind not in BACKEND_CLASSES:
            raise ModelLoadError(f"{path}: tokenizer class {kind} is rebuilt by transformers, not read as it is")
        if (path / "added_tokens.json").is_file():
            raise ModelLoadError(f"{path}: the legacy added_tokens.json is not supported without transformers")
        if "fast_tokenizer_files" in config:
            raise ModelLoadError(f"{path}: versioned tokenizer files (fast_tokenizer_files) are not supported")
        if not (path / "tokenizer.json").is_file():
            raise ModelLoadError(f"{path} has no tokenizer.json")
        try:
            backend = Tokenizer.from_file(str(path / "tokenizer.json"))
        except Exception as exc:  # the tokenizers library raises plain Exception for a file it cannot read
            raise ModelLoadError(f"{path}: unreadable tokenizer.json: {exc}") from exc
        settings = _token_settings(config, _read_json(path / "special_tokens_map.json"))
        specials, extras = _special_tokens(settings, backend)
        _add_missing_tokens(backend, settings, specials, extras)
        backend.no_truncation()  # transformers switches both off for every call that asks for neither
        backend.no_padding()
        backend.encode_special_tokens = bool(config.get("split_special_tokens", False))
        clean_up = bool(config.get("clean_up_tokenization_spaces", False))
        if type(backend.model).__name__ == "BPE":  # transformers 5 skips the clean-up for BPE: it corrupts text
            clean_up = clean_up and bool(
                config.get("clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output", False)
            )
        try:
            return cls(backend, specials, _chat_template(path, config), clean_up)
        except jinja2.exceptions.TemplateError as exc:
            raise ModelLoadError(f"{path}: unusable chat template: {exc}") from exc

    def __call__(self, text: str) -> dict[str, list[int]]:
        """Token ids of ``text`` with the tokenizer's own special tokens (its post-processor), as transformers."""
        return {"input_ids": self._encode(text, add_special_tokens=True)}

    def apply_chat_template(
        self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = False, tokenize: bool = True
    ) -> list[int] | str:
        """The conversation rendered by the model's chat template and, with ``tokenize``, encoded without added
        special tokens (the template writes them), as transformers' apply_chat_template does."""
        if self._template is None:
            raise ValueError("the tokenizer has no chat template")
        if not messages:
            raise ValueError("Cannot apply chat template to an empty conversation. Provide at least one message.")
        text = self._template.render(
            messages=messages,
            tools=None,
            documents=None,
            add_generation_prompt=add_generation_prompt,
            **self.special_tokens_map,
        )
        if not tokenize:
            return text
        return self._encode(text, add_special_tokens=False)

    def _encode(self, text: str, *, add_special_tokens: bool) -> list[int]:
        """Through ``encode_batch``, which lets go of the GIL while it works (``encode`` holds it): a prompt of
        megabytes takes seconds to tokenize in its worker thread, and the event loop must answer meanwhile
        (transformers' fast tokenizers encode through it for the same reason)."""
        return self._backend.encode_batch([text], add_special_tokens=add_special_tokens)[0].ids

    def decode(self, ids: int | Sequence[int], skip_special_tokens: bool = False) -> str:
        """Text of ``ids`` (unknown ids dropped, special ones too when asked), as transformers decodes them."""
        text = self._backend.decode([ids] if isinstance(ids, int) else list(ids), skip_special_tokens)
        return _clean_up_tokenization(text) if self._clean_up_spaces else text

    @property
    def special_tokens_map(self) -> dict[str, str]:
        """The named special tokens that are set, as strings: the variables a chat template gets besides messages."""
        return {name: str(token) for name, token in self._specials.items()}

    def _token(self, name: str) -> str | None:
        token = self._specials.get(name)
        return None if token is None else str(token)

    def _token_id(self, name: str) -> int | None:
        token = self._token(name)
        if token is None:
            return None
        index = self._backend.token_to_id(token)
        if index is None:  # transformers answers the unknown token's id for a token not in the vocabulary
            unk = self._token("unk_token")
            return None if unk is None else self._backend.token_to_id(unk)
        return index

    @property
    def bos_token(self) -> str | None:
        return self._token("bos_token")

    @property
    def bos_token_id(self) -> int | None:
        return self._token_id("bos_token")

    @property
    def eos_token(self) -> str | None:
        return self._token("eos_token")

    @property
    def eos_token_id(self) -> int | None:
        return self._token_id("eos_token")

    @property
    def unk_token(self) -> str | None:
        return self._token("unk_token")

    @property
    def unk_token_id(self) -> int | None:
        return self._token_id("unk_token")

    @property
    def pad_token(self) -> str | None:
        return self._token("pad_token")

    @pad_token.setter
    def pad_token(self, value: str | None) -> None:
        """Name the pad token, as transformers' setter does: the vocabulary is left as it is."""
        if value is None:
            self._specials.pop("pad_token", None)
        else:
            self._specials["pad_token"] = value

    @property
    def pad_token_id(self) -> int | None:
        return self._token_id("pad_token")


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


def _chat_template(path: Path, config: Mapping[str, Any]) -> ChatTemplate | None:
    """chat_template.jinja and chat_templates/*.jinja win over tokenizer_config.json's chat_template, as in
    transformers' _from_pretrained; one default template is a string, several a dict by name."""
    templates: dict[str, str] = {}
    if (path / "chat_template.jinja").is_file():
        templates["default"] = (path / "chat_template.jinja").read_text(encoding="utf-8")
    if (path / "chat_templates").is_dir():
        for file in sorted((path / "chat_templates").glob("*.jinja")):
            templates[file.name.removesuffix(".jinja")] = file.read_text(encoding="utf-8")
    if len(templates) == 1 and "default" in templates:
        return templates["default"]
    if templates:
        return templates
    value = config.get("chat_template")
    if isinstance(value, list):
        return {entry["name"]: entry["template"] for entry in value}
    return value if isinstance(value, str) else None


def _default_template(chat_template: ChatTemplate) -> str:
    """The template transformers picks when no tools are passed: the string, or the dict's "default"."""
    if isinstance(chat_template, str):
        return chat_template
    if "default" not in chat_template:
        raise jinja2.exceptions.TemplateError(f"no default among the chat templates {sorted(chat_template)}")
    return chat_template["default"]


def _token_settings(config: Mapping[str, Any], legacy_map: Mapping[str, Any]) -> dict[str, Any]:
    """tokenizer_config.json with special_tokens_map.json merged over it where transformers merges it: only when
    the config carries no added_tokens_decoder (the files of older transformers)."""
    settings = dict(config)
    if "additional_special_tokens" in settings and not settings.get("extra_special_tokens"):
        settings["extra_special_tokens"] = settings.pop("additional_special_tokens")
    if "added_tokens_decoder" in settings:
        return settings
    for key, value in legacy_map.items():
        if isinstance(value, dict) and key != "extra_special_tokens":
            value = AddedToken(**{k: v for k, v in value.items() if k != "special"}, special=True)
        elif key == "extra_special_tokens" and isinstance(value, list):
            merged = list(settings.get("extra_special_tokens") or [])
            for token in value:
                token = AddedToken(**token, special=True) if isinstance(token, dict) else token
                if str(token) not in {str(t) for t in merged}:
                    merged.append(token)
            value = merged
        settings[key] = value
    return settings


def _as_token(value: Any) -> Token | None:
    """A token as the config spells it: a string, or a serialized AddedToken (with transformers' "__type")."""
    if isinstance(value, dict):
        return AddedToken(**{k: v for k, v in value.items() if k != "__type"})
    return value if isinstance(value, (str, AddedToken)) else None


def _decoder_tokens(settings: Mapping[str, Any]) -> list[AddedToken]:
    """tokenizer_config.json's added_tokens_decoder, in id order."""
    entries = settings.get("added_tokens_decoder") or {}
    return [AddedToken(**{k: v for k, v in entries[i].items() if k != "__type"}) for i in sorted(entries, key=int)]


def _special_tokens(settings: Mapping[str, Any], backend: Tokenizer) -> tuple[dict[str, Token], list[Token]]:
    """The named special tokens (the seven standard names, then model-specific ``*_token`` names such as
    image_token) and the extra special tokens, as transformers collects them from the settings."""
    by_content = {token.content: token for token in _decoder_tokens(settings)}
    specials: dict[str, Token] = {}
    for name in NAMED_TOKENS:
        token = _as_token(settings.get(name))
        if token is not None:
            specials[name] = by_content.get(str(token), token)
    # transformers sets AddedToken-valued model-specific names first, then string-valued ones and a dict of
    # extra_special_tokens: the order in which missing ones get their ids
    custom = [(n, v) for n, v in settings.items() if n.endswith("_token") and n not in NAMED_TOKENS]
    serialized = [(n, v) for n, v in custom if isinstance(v, AddedToken) or _is_serialized(v)]
    plain = [(n, v) for n, v in custom if isinstance(v, str)]
    extra = settings.get("extra_special_tokens") or []
    if isinstance(extra, dict):
        plain += list(extra.items())
        extra = []
    for name, value in serialized + plain:
        token = _as_token(value)
        if token is not None:
            specials[name] = token
    extras = [token for token in map(_as_token, extra) if token is not None]
    return specials, extras


def _is_serialized(value: Any) -> bool:
    return isinstance(value, dict) and value.get("__type") == "AddedToken"


def _add_missing_tokens(
    backend: Tokenizer, settings: Mapping[str, Any], specials: Mapping[str, Token], extras: Sequence[Token]
) -> None:
    """Add what TokenizersBackend.__init__ adds: the config's added_tokens_decoder (all of it: transformers'
    already-present check compares ids with tokens and never matches), then each special token the tokenizer
    does not have yet, as a special added token."""
    to_add: list[Token] = list(_decoder_tokens(settings))
    known = {token.content for token in backend.get_added_tokens_decoder().values()} | {str(t) for t in to_add}
    for token in [*specials.values(), *extras]:
        if str(token) not in known:
            to_add.append(token)
            known.add(str(token))
    named = {str(token) for token in specials.values()}
    tokens: list[AddedToken] = []
    for token in to_add:
        if isinstance(token, str):
            token = AddedToken(token, special=True)
        elif not token.special and token.content in named:
            token.special = True
        tokens.append(token)
    if tokens:
        backend.add_tokens(tokens)


def _clean_up_tokenization(text: str) -> str:
    """transformers' clean_up_tokenization: the spaces a word-piece tokenizer leaves before punctuation."""
    for spaced, joined in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't")):
        text = text.replace(spaced, joined)
    for spaced, joined in ((" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
        text = text.replace(spaced, joined)
    return text


class _GenerationBlock(jinja2.ext.Extension):
    """``{% generation %}...{% endgeneration %}``, transformers' AssistantTracker tag: it marks the assistant's
    text for assistant-token masks; without a mask asked for, as here, it renders its body unchanged."""

    tags = {"generation"}

    def parse(self, parser: Parser) -> jinja2.nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

    def _render(self, caller: Callable[[], str]) -> str:
        return caller()


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(
    value: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None, sort_keys: bool = False
) -> str:
    """transformers' tojson: plain json.dumps (jinja's own escapes HTML characters), with its options."""
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(pattern: str) -> str:
    return datetime.now().strftime(pattern)


def _compile(template: str) -> jinja2.Template:
    """The template in transformers' chat environment: sandboxed, trimmed blocks, loop controls, its globals."""
    environment = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[_GenerationBlock, jinja2.ext.loopcontrols]
    )
    environment.filters["tojson"] = _tojson
    environment.globals["raise_exception"] = _raise_exception
    environment.globals["strftime_now"] = _strftime_now
    return environment.from_string(template)
