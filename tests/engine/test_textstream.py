"""IncrementalDecoder against the real SmolLM2 tokenizer, and StopMatcher on hand-made streams."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from trayllm.engine.textstream import REPLACEMENT, IncrementalDecoder, StopMatcher

MULTIBYTE_TEXTS = [
    "Hello 👋 world 🌍! café, naïve, Øresund, São Paulo",
    "日本語のテキストと中文的文本，还有한국어 텍스트。",
    "family 👨‍👩‍👧 astronaut 🧑‍🚀 flag 🇯🇵 skin 👍🏽 and 😀😀😀 in a row",
    "mixed: Ελληνικά, русский, עברית, العربية, हिन्दी, ไทย",
    'plain ASCII, with  double spaces,\nnew lines\tand tabs. It\'s "quoted" ; ok ?',
]


@pytest.fixture(scope="module")
def tokenizer(converted_model_dir: Path) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(converted_model_dir)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte-to-character table (byte-level BPE vocabularies spell single bytes with it)."""
    printable = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars), strict=True))


def _stream(tokenizer: PreTrainedTokenizerBase, ids: list[int]) -> list[str]:
    decoder = IncrementalDecoder(tokenizer)
    return [decoder.push(i) for i in ids]


# -- IncrementalDecoder ------------------------------------------------------------------


@pytest.mark.parametrize("text", MULTIBYTE_TEXTS)
def test_pieces_join_to_the_full_decode(tokenizer: PreTrainedTokenizerBase, text: str) -> None:
    ids = tokenizer.encode(text, add_special_tokens=False)
    pieces = _stream(tokenizer, ids)
    full = tokenizer.decode(ids, skip_special_tokens=True)
    assert full == text  # sanity: the tokenizer round-trips the text
    assert "".join(pieces) == full
    assert not any(REPLACEMENT in piece for piece in pieces)


def test_tokens_that_end_inside_a_character_are_held_back(tokenizer: PreTrainedTokenizerBase) -> None:
    """Some tokens of emoji/CJK text decode to U+FFFD on their own: the stream must wait for the rest."""
    text = MULTIBYTE_TEXTS[2]
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert any(REPLACEMENT in tokenizer.decode([i]) for i in ids), "test text no longer splits a character"
    pieces = _stream(tokenizer, ids)
    assert "" in pieces  # at least one token produced no text yet
    assert "".join(pieces) == text
    assert not any(REPLACEMENT in piece for piece in pieces)


@pytest.mark.parametrize("text", MULTIBYTE_TEXTS[:4])
def test_one_token_per_byte(tokenizer: PreTrainedTokenizerBase, text: str) -> None:
    """The worst split: every UTF-8 byte its own token, so 2-, 3- and 4-byte characters arrive piecemeal."""
    table = _bytes_to_unicode()
    vocab = tokenizer.get_vocab()
    ids = [vocab[table[b]] for b in text.encode("utf-8")]
    assert tokenizer.decode(ids) == text
    pieces = _stream(tokenizer, ids)
    assert "".join(pieces) == text
    assert not any(REPLACEMENT in piece for piece in pieces)
    # nothing is emitted for the leading bytes of a multi-byte character
    first_char_bytes = len("😀".encode())
    assert _stream(tokenizer, [vocab[table[b]] for b in "😀".encode()]) == [""] * (first_char_bytes - 1) + ["😀"]


def test_special_tokens_are_skipped_in_the_stream(tokenizer: PreTrainedTokenizerBase) -> None:
    eos = tokenizer.eos_token_id
    first = tokenizer.encode("über 🌍", add_special_tokens=False)
    second = tokenizer.encode(" 日本", add_special_tokens=False)
    ids = first + [eos] + second + [eos]
    pieces = _stream(tokenizer, ids)
    assert "".join(pieces) == tokenizer.decode(ids, skip_special_tokens=True) == "über 🌍 日本"
    assert not any(tokenizer.eos_token in piece for piece in pieces)


def test_every_prefix_of_the_stream_is_a_prefix_of_the_text(tokenizer: PreTrainedTokenizerBase) -> None:
    """Streamed text is never taken back: what has been shown so far is always a prefix of the final text."""
    text = " ".join(MULTIBYTE_TEXTS)
    ids = tokenizer.encode(text, add_special_tokens=False)
    shown = ""
    decoder = IncrementalDecoder(tokenizer)
    for count, token in enumerate(ids, start=1):
        shown += decoder.push(token)
        assert text.startswith(shown)
        so_far = tokenizer.decode(ids[:count])
        # at most the trailing incomplete character(s) are still held back
        assert so_far.rstrip(REPLACEMENT).startswith(shown)
    assert shown == text


# -- StopMatcher -------------------------------------------------------------------------


def test_no_stops_passes_text_through() -> None:
    matcher = StopMatcher(())
    assert matcher.feed("Hello ST") == ("Hello ST", False)
    assert matcher.feed("OP") == ("OP", False)
    assert matcher.flush() == ""


def test_stop_split_across_feeds() -> None:
    matcher = StopMatcher(("STOP",))
    assert matcher.feed("Hello S") == ("Hello ", False)
    assert matcher.feed("T") == ("", False)
    assert matcher.feed("OP and more") == ("", True)


def test_stop_inside_one_feed_cuts_before_it() -> None:
    matcher = StopMatcher(("\n\n",))
    assert matcher.feed("line one\n\nline two") == ("line one", True)


def test_stop_at_the_very_start() -> None:
    matcher = StopMatcher(("END",))
    assert matcher.feed("END") == ("", True)


@pytest.mark.parametrize("stops", [("world", "lo"), ("lo", "world")])
def test_two_stops_earliest_wins(stops: tuple[str, str]) -> None:
    matcher = StopMatcher(stops)
    assert matcher.feed("hello world") == ("hel", True)


def test_two_stops_earliest_wins_across_feeds() -> None:
    matcher = StopMatcher(("<end>", "###"))
    assert matcher.feed("answer #") == ("answer ", False)
    assert matcher.feed("## then <end>") == ("", True)


def test_lookalike_prefix_is_released_when_it_diverges() -> None:
    matcher = StopMatcher(("STOP",))
    assert matcher.feed("abc ST") == ("abc ", False)
    assert matcher.feed("A") == ("STA", False)
    assert matcher.feed("RT") == ("RT", False)
    assert matcher.flush() == ""


def test_self_overlapping_stop() -> None:
    """'aab' inside 'aaab': one 'a' is text, the rest is the stop."""
    matcher = StopMatcher(("aab",))
    out = [matcher.feed(c) for c in "aaab"]
    assert out == [("", False), ("", False), ("a", False), ("", True)]


def test_flush_returns_held_text_once() -> None:
    matcher = StopMatcher(("STOP",))
    assert matcher.feed("the end ST") == ("the end ", False)
    assert matcher.flush() == "ST"
    assert matcher.flush() == ""


def test_flush_after_a_stop_is_empty() -> None:
    matcher = StopMatcher(("STOP",))
    assert matcher.feed("a ST") == ("a ", False)
    assert matcher.feed("OP") == ("", True)
    assert matcher.flush() == ""


@pytest.mark.parametrize("seed", range(20))
def test_any_chunking_gives_the_text_before_the_first_stop(seed: int) -> None:
    """Random chunkings of the same text all yield exactly the text before the earliest stop."""
    rng = random.Random(seed)
    stops = ("</s>", "User:", "\n\n")
    body = "".join(rng.choice(["ab", "<", "</", "U", "Us", "User", "\n", " x ", "é", "日"]) for _ in range(30))
    text = body + rng.choice(stops) + "tail that must not show"
    expected = text[: min(i for i in (text.find(s) for s in stops) if i >= 0)]
    cuts = sorted(rng.sample(range(1, len(text)), k=min(len(text) - 1, rng.randint(1, 15))))
    chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    matcher = StopMatcher(stops)
    shown, stopped = "", False
    for chunk in chunks:
        piece, stopped = matcher.feed(chunk)
        shown += piece
        if stopped:
            break
    assert stopped
    assert shown == expected
