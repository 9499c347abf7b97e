"""The context window: which messages of a conversation reach the model, and as which token ids.

The system prompt always stays. After it, whole turns (a user message and the replies that
follow it) are kept newest first: at most ``history_turns`` of them, and only as many as fit
the model's context with room left for the reply. Dropping whole turns keeps the model from
seeing a reply whose question was cut away.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from trayllm.errors import ContextLengthExceeded, InvalidRequest

if TYPE_CHECKING:  # a remote engine builds prompts too, and must not import transformers (nor torch)
    from transformers import PreTrainedTokenizerBase

    from trayllm.engine.native_tokenizer import NativeTokenizer

    Tokenizer = PreTrainedTokenizerBase | NativeTokenizer  # transformers' (any model) or trayllm's own (Llama, CPU)

Message = dict[str, str]


@dataclass(frozen=True)
class Prompt:
    """What an engine generates from: the messages of the window kept and, for an engine that runs the
    model here, their token ids (empty for a remote engine: the server it forwards to tokenizes)."""

    ids: list[int]
    max_tokens: int
    turns_kept: int
    turns_dropped: int
    messages: tuple[Message, ...] = ()
    text: str | None = None  # a raw prompt (legacy completions, Ollama's raw generate): no chat template


def split_turns(messages: Sequence[Message]) -> tuple[list[Message], list[list[Message]]]:
    """Leading system messages, then the rest grouped into turns that each start at a user message."""
    system: list[Message] = []
    rest = list(messages)
    while rest and rest[0]["role"] == "system":
        system.append(rest.pop(0))
    turns: list[list[Message]] = []
    for message in rest:
        if message["role"] == "system":
            raise InvalidRequest("system messages must come first", param="messages")
        if message["role"] == "user" or not turns:
            turns.append([message])
        else:
            turns[-1].append(message)
    if not turns:
        raise InvalidRequest("messages must contain at least one user or assistant message", param="messages")
    return system, turns


def encode(tokenizer: Tokenizer, messages: Sequence[Message]) -> list[int]:
    encoded: Any = tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=True)
    ids = encoded["input_ids"] if hasattr(encoded, "keys") else encoded  # a BatchEncoding, or the ids themselves
    return [int(i) for i in ids]


def build_prompt(
    tokenizer: Tokenizer,
    messages: Sequence[Message],
    *,
    context_length: int,
    history_turns: int,
    max_tokens: int | None,
    default_max_tokens: int,
) -> Prompt:
    """Token ids for the window of ``messages`` that fits, and the reply budget that goes with it.

    An explicit ``max_tokens`` is honoured or refused; the default one shrinks to what is left.
    """
    reserve = _reserve(context_length, max_tokens, default_max_tokens)
    budget = context_length - reserve
    system, turns = split_turns(messages)
    kept = turns[-history_turns:]
    while True:
        ids = encode(tokenizer, system + [m for turn in kept for m in turn])
        if len(ids) <= budget or len(kept) == 1:
            break
        kept = kept[1:]
    if len(ids) > budget:
        raise ContextLengthExceeded(
            f"the prompt is {len(ids)} tokens; with max_tokens {reserve} the model's context of "
            f"{context_length} tokens allows at most {budget}; shorten the message or lower max_tokens",
            param="messages",
        )
    reply = max_tokens if max_tokens is not None else min(default_max_tokens, context_length - len(ids))
    window = tuple(system + [m for turn in kept for m in turn])
    return Prompt(ids, reply, turns_kept=len(kept), turns_dropped=len(turns) - len(kept), messages=window)


def build_text_prompt(
    tokenizer: Tokenizer,
    text: str,
    *,
    context_length: int,
    max_tokens: int | None,
    default_max_tokens: int,
) -> Prompt:
    """Token ids of a raw prompt, tokenized as it is (the tokenizer's own special tokens, as vLLM and
    transformers do by default; no chat template), with its reply budget. Nothing can be dropped from a raw
    prompt, so one that does not fit is refused whole."""
    if not text:
        raise InvalidRequest("the prompt is empty", param="prompt")
    reserve = _reserve(context_length, max_tokens, default_max_tokens)
    ids = [int(i) for i in tokenizer(text)["input_ids"]]
    if not ids:
        raise InvalidRequest("the prompt has no tokens", param="prompt")
    if len(ids) > context_length - reserve:
        raise ContextLengthExceeded(
            f"the prompt is {len(ids)} tokens; with max_tokens {reserve} the model's context of "
            f"{context_length} tokens allows at most {context_length - reserve}; shorten it or lower max_tokens",
            param="prompt",
        )
    reply = max_tokens if max_tokens is not None else min(default_max_tokens, context_length - len(ids))
    return Prompt(ids, reply, turns_kept=1, turns_dropped=0, text=text)


def _reserve(context_length: int, max_tokens: int | None, default_max_tokens: int) -> int:
    """The room kept for the reply while the prompt is fitted: an explicit ``max_tokens`` whole (refused when
    it leaves no room at all), the default at most half the context."""
    if max_tokens is not None and max_tokens >= context_length:
        raise ContextLengthExceeded(
            f"max_tokens {max_tokens} leaves no room for a prompt in the model's context of {context_length} tokens",
            param="max_tokens",
        )
    return max_tokens if max_tokens is not None else min(default_max_tokens, context_length // 2)
