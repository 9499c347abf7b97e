"""The context window: turn grouping, history limits, token budgets and their errors (real tokenizer)."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from trayllm.engine.conversation import Message, build_prompt, encode, split_turns
from trayllm.errors import ContextLengthExceeded, InvalidRequest

SYSTEM: Message = {"role": "system", "content": "You are a terse assistant. SYSTEM-MARKER"}


@pytest.fixture(scope="module")
def tokenizer(converted_model_dir: Path) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(converted_model_dir)


def user(text: str) -> Message:
    return {"role": "user", "content": text}


def assistant(text: str) -> Message:
    return {"role": "assistant", "content": text}


def turns(count: int) -> list[Message]:
    out: list[Message] = []
    for i in range(count):
        out += [user(f"question number {i}"), assistant(f"answer number {i}")]
    return out


def length(tokenizer: PreTrainedTokenizerBase, messages: list[Message]) -> int:
    return len(encode(tokenizer, messages))


def text_of(tokenizer: PreTrainedTokenizerBase, ids: list[int]) -> str:
    return tokenizer.decode(ids)


# -- split_turns ------------------------------------------------------------------------------


def test_split_turns_groups_replies_with_their_question() -> None:
    messages = [SYSTEM, user("a"), assistant("b"), assistant("c"), user("d"), user("e"), assistant("f")]
    system, grouped = split_turns(messages)
    assert system == [SYSTEM]
    assert grouped == [[user("a"), assistant("b"), assistant("c")], [user("d")], [user("e"), assistant("f")]]


def test_assistant_first_conversation_is_its_own_first_turn() -> None:
    messages = [assistant("Hi, how can I help?"), assistant("Ask away."), user("q1"), assistant("a1"), user("q2")]
    system, grouped = split_turns(messages)
    assert system == []
    assert grouped == [
        [assistant("Hi, how can I help?"), assistant("Ask away.")],
        [user("q1"), assistant("a1")],
        [user("q2")],
    ]


def test_several_leading_system_messages_are_all_kept() -> None:
    second = {"role": "system", "content": "second"}
    system, grouped = split_turns([SYSTEM, second, user("q")])
    assert system == [SYSTEM, second]
    assert grouped == [[user("q")]]


def test_system_message_after_a_user_message_is_refused() -> None:
    with pytest.raises(InvalidRequest) as info:
        split_turns([user("q"), SYSTEM])
    assert info.value.param == "messages"
    assert "system" in info.value.message


def test_system_only_conversation_is_refused() -> None:
    with pytest.raises(InvalidRequest) as info:
        split_turns([SYSTEM])
    assert info.value.param == "messages"


def test_build_prompt_refuses_a_late_system_message(tokenizer: PreTrainedTokenizerBase) -> None:
    with pytest.raises(InvalidRequest) as info:
        build_prompt(
            tokenizer,
            [SYSTEM, user("q"), assistant("a"), SYSTEM],
            context_length=8192,
            history_turns=5,
            max_tokens=None,
            default_max_tokens=64,
        )
    assert not isinstance(info.value, ContextLengthExceeded)


# -- build_prompt: which turns stay ---------------------------------------------------------


def test_everything_fits(tokenizer: PreTrainedTokenizerBase) -> None:
    messages = [SYSTEM, *turns(3), user("final question")]
    prompt = build_prompt(
        tokenizer, messages, context_length=8192, history_turns=10, max_tokens=None, default_max_tokens=100
    )
    assert prompt.ids == encode(tokenizer, messages)
    assert (prompt.turns_kept, prompt.turns_dropped) == (4, 0)
    assert prompt.max_tokens == 100


def test_at_most_history_turns_newest_turns_are_kept(tokenizer: PreTrainedTokenizerBase) -> None:
    messages = [SYSTEM, *turns(5), user("final question")]
    prompt = build_prompt(
        tokenizer, messages, context_length=8192, history_turns=2, max_tokens=None, default_max_tokens=100
    )
    assert (prompt.turns_kept, prompt.turns_dropped) == (2, 4)
    assert prompt.ids == encode(tokenizer, [SYSTEM, *turns(5)[-2:], user("final question")])
    text = text_of(tokenizer, prompt.ids)
    assert "SYSTEM-MARKER" in text
    assert "question number 4" in text and "answer number 4" in text
    assert "number 3" not in text


def test_history_turns_of_one_keeps_only_the_last_turn(tokenizer: PreTrainedTokenizerBase) -> None:
    messages = [SYSTEM, *turns(3), user("final question")]
    prompt = build_prompt(
        tokenizer, messages, context_length=8192, history_turns=1, max_tokens=None, default_max_tokens=100
    )
    assert prompt.ids == encode(tokenizer, [SYSTEM, user("final question")])
    assert (prompt.turns_kept, prompt.turns_dropped) == (1, 3)


@pytest.mark.parametrize("fit", [1, 2, 3])
def test_old_turns_are_dropped_when_over_budget(tokenizer: PreTrainedTokenizerBase, fit: int) -> None:
    """The budget is set between the sizes of the last ``fit`` and ``fit + 1`` turns: exactly ``fit`` stay."""
    history = [*turns(4), user("final question")]
    all_turns = split_turns(history)[1]
    size = {k: length(tokenizer, [SYSTEM, *[m for t in all_turns[-k:] for m in t]]) for k in range(1, 6)}
    max_tokens = 50
    context = size[fit] + max_tokens  # the last `fit` turns fit exactly; one more would not
    assert size[fit + 1] > size[fit]
    prompt = build_prompt(
        tokenizer,
        [SYSTEM, *history],
        context_length=context,
        history_turns=5,
        max_tokens=max_tokens,
        default_max_tokens=512,
    )
    assert (prompt.turns_kept, prompt.turns_dropped) == (fit, 5 - fit)
    assert len(prompt.ids) == size[fit]
    assert prompt.max_tokens == max_tokens
    text = text_of(tokenizer, prompt.ids)
    assert text.count("SYSTEM-MARKER") == 1
    assert "final question" in text
    assert f"question number {4 - fit}" not in text


def test_budget_one_token_short_drops_one_more_turn(tokenizer: PreTrainedTokenizerBase) -> None:
    history = [*turns(2), user("final question")]
    full = length(tokenizer, [SYSTEM, *history])
    prompt = build_prompt(
        tokenizer,
        [SYSTEM, *history],
        context_length=full + 20 - 1,
        history_turns=5,
        max_tokens=20,
        default_max_tokens=512,
    )
    assert prompt.turns_dropped == 1
    prompt = build_prompt(
        tokenizer, [SYSTEM, *history], context_length=full + 20, history_turns=5, max_tokens=20, default_max_tokens=512
    )
    assert prompt.turns_dropped == 0


def test_system_is_kept_even_when_turns_are_dropped_for_it(tokenizer: PreTrainedTokenizerBase) -> None:
    long_system = {"role": "system", "content": "SYSTEM-MARKER " + "rule " * 200}
    history = [*turns(3), user("final question")]
    last = length(tokenizer, [long_system, user("final question")])
    prompt = build_prompt(
        tokenizer,
        [long_system, *history],
        context_length=last + 10,
        history_turns=5,
        max_tokens=10,
        default_max_tokens=512,
    )
    assert prompt.ids == encode(tokenizer, [long_system, user("final question")])
    assert prompt.turns_dropped == 3


# -- build_prompt: errors and the reply budget ------------------------------------------------


def test_single_turn_too_long_names_the_token_counts(tokenizer: PreTrainedTokenizerBase) -> None:
    messages = [SYSTEM, user("word " * 300)]
    size = length(tokenizer, messages)
    with pytest.raises(ContextLengthExceeded) as info:
        build_prompt(tokenizer, messages, context_length=256, history_turns=5, max_tokens=56, default_max_tokens=512)
    error = info.value
    assert error.param == "messages"
    assert error.code == "context_length_exceeded" and error.status_code == 400
    assert str(size) in error.message  # the prompt's length
    assert "256" in error.message  # the context
    assert "200" in error.message  # what is left for the prompt
    assert "56" in error.message  # the reply reserve


@pytest.mark.parametrize("max_tokens", [4096, 5000])
def test_explicit_max_tokens_at_or_over_the_context_is_refused(
    tokenizer: PreTrainedTokenizerBase, max_tokens: int
) -> None:
    with pytest.raises(ContextLengthExceeded) as info:
        build_prompt(
            tokenizer, [user("hi")], context_length=4096, history_turns=5, max_tokens=max_tokens, default_max_tokens=512
        )
    assert info.value.param == "max_tokens"
    assert str(max_tokens) in info.value.message and "4096" in info.value.message


def test_explicit_max_tokens_is_honoured(tokenizer: PreTrainedTokenizerBase) -> None:
    prompt = build_prompt(
        tokenizer, [user("hi")], context_length=4096, history_turns=5, max_tokens=4000, default_max_tokens=512
    )
    assert prompt.max_tokens == 4000
    assert len(prompt.ids) + prompt.max_tokens <= 4096


def test_explicit_max_tokens_too_big_for_the_prompt_is_refused(tokenizer: PreTrainedTokenizerBase) -> None:
    messages = [user("hi")]
    size = length(tokenizer, messages)
    with pytest.raises(ContextLengthExceeded) as info:
        build_prompt(
            tokenizer, messages, context_length=200, history_turns=5, max_tokens=200 - size + 1, default_max_tokens=512
        )
    assert info.value.param == "messages"


def test_default_max_tokens_is_kept_when_there_is_room(tokenizer: PreTrainedTokenizerBase) -> None:
    prompt = build_prompt(
        tokenizer, [user("hi")], context_length=8192, history_turns=5, max_tokens=None, default_max_tokens=512
    )
    assert prompt.max_tokens == 512


def test_default_max_tokens_shrinks_to_the_remaining_context(tokenizer: PreTrainedTokenizerBase) -> None:
    messages = [SYSTEM, user("hi")]
    size = length(tokenizer, messages)
    context = 2 * size + 10  # half the context (the default reserve) is enough for the prompt
    prompt = build_prompt(
        tokenizer, messages, context_length=context, history_turns=5, max_tokens=None, default_max_tokens=10_000
    )
    assert prompt.max_tokens == context - size
    assert len(prompt.ids) + prompt.max_tokens == context


def test_default_reserve_drops_turns_before_shrinking_the_reply(tokenizer: PreTrainedTokenizerBase) -> None:
    """With a default max_tokens, half the context is reserved for the reply; old turns go first."""
    history = [*turns(3), user("final question")]
    last = length(tokenizer, [SYSTEM, user("final question")])
    full = length(tokenizer, [SYSTEM, *history])
    context = 2 * last + 2  # reserve = context // 2 = last + 1: only the final turn fits
    assert full > context - context // 2
    prompt = build_prompt(
        tokenizer,
        [SYSTEM, *history],
        context_length=context,
        history_turns=5,
        max_tokens=None,
        default_max_tokens=10_000,
    )
    assert prompt.turns_kept == 1 and prompt.turns_dropped == 3
    assert prompt.max_tokens == context - last


def test_assistant_first_conversation_drops_the_greeting_first(tokenizer: PreTrainedTokenizerBase) -> None:
    greeting = assistant("GREETING-MARKER how can I help?")
    messages = [SYSTEM, greeting, user("question one"), assistant("answer one"), user("question two")]
    full = build_prompt(
        tokenizer, messages, context_length=8192, history_turns=5, max_tokens=None, default_max_tokens=64
    )
    assert (full.turns_kept, full.turns_dropped) == (3, 0)
    assert "GREETING-MARKER" in text_of(tokenizer, full.ids)
    limited = build_prompt(
        tokenizer, messages, context_length=8192, history_turns=2, max_tokens=None, default_max_tokens=64
    )
    assert (limited.turns_kept, limited.turns_dropped) == (2, 1)
    assert "GREETING-MARKER" not in text_of(tokenizer, limited.ids)
    assert "answer one" in text_of(tokenizer, limited.ids)
