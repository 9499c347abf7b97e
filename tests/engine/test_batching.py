"""Continuous batching: rows joining and leaving the batch must not change any row's tokens.

The RunningBatch tests use a tiny random Llama and compare logits with an uncached forward
pass of each sequence alone. The Engine tests (slow) run the real SmolLM2 model and compare
greedy replies generated alone with the same replies generated while other requests join and
leave mid-flight.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.overrides import TorchFunctionMode
from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM, PreTrainedModel

from trayllm.config import load_settings
from trayllm.engine.batch import RunningBatch, cache_argument, prefill
from trayllm.engine.conversation import Message
from trayllm.engine.engine import Engine
from trayllm.engine.sampling import pick_tokens
from trayllm.engine.types import Finished, SamplingParams, TokenText
from trayllm.errors import ShuttingDown

CPU = torch.device("cpu")
ATOL = 1e-4

# -- RunningBatch on a tiny model --------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny() -> PreTrainedModel:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=97,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=0,
    )
    return LlamaForCausalLM(config).eval()


def alone(model: PreTrainedModel, tokens: Sequence[int]) -> torch.Tensor:
    """Last-position logits of one sequence, no cache, no padding."""
    with torch.no_grad():
        return model(input_ids=torch.tensor([list(tokens)])).logits[0, -1]


def check_rows(model: PreTrainedModel, logits: torch.Tensor, sequences: Sequence[Sequence[int]]) -> None:
    assert logits.shape[0] == len(sequences)
    for row, tokens in enumerate(sequences):
        torch.testing.assert_close(logits[row], alone(model, tokens), atol=ATOL, rtol=0)


def test_prefill_left_pads_to_the_longest_prompt(tiny: PreTrainedModel) -> None:
    prompts = [[5, 6, 7, 8, 9, 10, 11], [20, 21], [30, 31, 32, 33]]
    with torch.no_grad():
        batch, out = prefill(tiny, ["a", "b", "c"], prompts, pad_id=0, device=CPU)
    assert batch.rows == ["a", "b", "c"] and len(batch) == 3
    assert batch.mask.tolist() == [[1] * 7, [0] * 5 + [1] * 2, [0] * 3 + [1] * 4]
    check_rows(tiny, out.logits, prompts)
    for row, prompt in enumerate(prompts):
        assert set(batch.seen[row].nonzero().flatten().tolist()) == set(prompt)
    assert batch.mergeable


def test_the_cache_goes_in_under_the_name_the_forward_declares(tiny: PreTrainedModel) -> None:
    class Renamed:  # transformers >= 5.24
        def forward(self, input_ids: torch.Tensor, cache: DynamicCache | None = None, **kwargs: object) -> None: ...

    class Before:  # transformers < 5.24
        def forward(
            self, input_ids: torch.Tensor, past_key_values: DynamicCache | None = None, **kwargs: object
        ) -> None: ...

    cache = DynamicCache(config=tiny.config)
    assert cache_argument(Renamed(), cache) == {"cache": cache}
    assert cache_argument(Before(), cache) == {"past_key_values": cache}
    # The installed release takes whichever name it declares, and fills the cache through it (a name it
    # did not declare would vanish into **kwargs, leaving the cache empty and every step without context).
    with torch.no_grad():
        batch, _ = prefill(tiny, ["a"], [[5, 6, 7]], pad_id=0, device=CPU)
        assert batch.cache.get_seq_length() == 3
        batch.step(tiny, [8])
    assert batch.cache.get_seq_length() == 4


def test_rows_join_and_leave_without_changing_anyones_logits(tiny: PreTrainedModel) -> None:
    seqs = {"a": [5, 6, 7, 8, 9, 10, 11], "b": [20, 21]}
    with torch.no_grad():
        batch, out = prefill(tiny, ["a", "b"], [seqs["a"], seqs["b"]], pad_id=0, device=CPU)
        check_rows(tiny, out.logits, [seqs["a"], seqs["b"]])

        def step(tokens: dict[str, int]) -> None:
            for row, token in tokens.items():
                seqs[row].append(token)
            result = batch.step(tiny, [tokens[r] for r in batch.rows])
            check_rows(tiny, result.logits, [seqs[r] for r in batch.rows])

        step({"a": 1, "b": 2})
        # a newcomer with a prompt longer than the running batch's width
        seqs["c"] = list(range(40, 52))
        fresh, out = prefill(tiny, ["c"], [seqs["c"]], pad_id=0, device=CPU)
        check_rows(tiny, out.logits, [seqs["c"]])
        batch.absorb(fresh)
        assert batch.rows == ["a", "b", "c"]
        assert batch.mask.shape == (3, 12)
        step({"a": 3, "b": 4, "c": 5})
        # a short newcomer: this time the newcomer is the one padded
        seqs["d"] = [60]
        fresh, _ = prefill(tiny, ["d"], [seqs["d"]], pad_id=0, device=CPU)
        batch.absorb(fresh)
        step({"a": 6, "b": 7, "c": 8, "d": 9})
        # the longest row leaves: the padding only it needed is trimmed away
        batch.keep([0, 1, 3])
        assert batch.rows == ["a", "b", "d"]
        width = max(len(seqs[r]) for r in batch.rows)  # every fed token is cached
        assert width < 14  # 'c' (12 + 2 tokens) was the widest
        assert batch.mask.shape == (3, width)
        assert batch.cache.layers[0].keys.shape[2] == width
        step({"a": 10, "b": 11, "d": 12})
        batch.keep([1])
        assert batch.rows == ["b"]
        assert batch.mask.tolist() == [[1] * len(seqs["b"])]
        step({"b": 13})
    for token in (1, 4, 7, 11, 13):
        assert bool(batch.seen[0, token]) == (token in seqs["b"])


def test_absorb_into_an_emptied_batch(tiny: PreTrainedModel) -> None:
    with torch.no_grad():
        batch, _ = prefill(tiny, ["a"], [[3, 4, 5]], pad_id=0, device=CPU)
        batch.keep([])
        assert len(batch) == 0
        fresh, _ = prefill(tiny, ["b"], [[7, 8]], pad_id=0, device=CPU)
        batch.absorb(fresh)
        assert batch.rows == ["b"]
        out = batch.step(tiny, [9])
    check_rows(tiny, out.logits, [[7, 8, 9]])


def test_keep_reorders_rows_as_asked(tiny: PreTrainedModel) -> None:
    """keep() keeps the rows at ``indices`` in that order, also when their count is unchanged."""
    with torch.no_grad():
        batch, _ = prefill(tiny, ["a", "b"], [[3, 4, 5], [7, 8]], pad_id=0, device=CPU)
        batch.keep([1, 0])
        assert batch.rows == ["b", "a"]


def test_a_batch_of_plain_layers_is_mergeable(tiny: PreTrainedModel) -> None:
    batch = RunningBatch(
        ["x"],
        DynamicCache(config=tiny.config),
        torch.ones((1, 1), dtype=torch.long),
        torch.zeros((1, 97), dtype=torch.bool),
    )
    assert batch.mergeable


# -- RunningBatch spread over several devices (device_map="auto") -------------------------------

GPU0, GPU1 = torch.device("cuda", 0), torch.device("cuda", 1)


def operands(value: object) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from operands(item)
    elif isinstance(value, dict):
        yield from operands(list(value.values()))


class TwoGpus(TorchFunctionMode):
    """Plays two GPUs on this CPU. A tensor placed on one (``place``) keeps its data here but reports that
    device, and every operation checks ATen's device rules as CUDA does: all tensor operands on one device
    (a CPU scalar aside), except plain indexing, which also takes its indices from the CPU ("indices should be
    either on cpu or on the same device as the indexed tensor"). Whatever is made or copied with a device
    argument lands there; the result of any other operation lands where its operands are."""

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func == torch.Tensor.device.__get__:  # a fresh method-wrapper on each access: equal, not identical
            return where(args[0])
        target = next((d for d in (*args, *kwargs.values()) if isinstance(d, torch.device)), None)
        if target is not None:  # a factory or a copy: made here, placed there
            args = tuple(CPU if a is target else a for a in args)
            kwargs = {k: CPU if v is target else v for k, v in kwargs.items()}
            made = func(*args, **kwargs)
            if any(made is t for t in operands(args)):  # .to() the CPU returned its input: a real copy is new
                made = made.clone()
            return place(made, target)
        tensors = list(operands(args)) + list(operands(kwargs))
        if func is torch.Tensor.__getitem__:
            device = where(args[0])
            for index in tensors[1:]:
                if where(index) not in (CPU, device):
                    raise RuntimeError(
                        f"indices should be either on cpu or on the same device as the indexed tensor ({device})"
                    )
        else:
            devices = {where(t) for t in tensors if t.dim() > 0 or where(t) != CPU}
            if len(devices) > 1:
                raise RuntimeError(
                    f"Expected all tensors to be on the same device, but found at least two "
                    f"devices, {sorted(map(str, devices))}"
                )
            device = devices.pop() if devices else CPU
        return place(func(*args, **kwargs), device)


def where(tensor: torch.Tensor) -> torch.device:
    return getattr(tensor, "played_device", CPU)


def place(result: Any, device: torch.device) -> Any:
    """Place the tensors in ``result`` on ``device``; anything else passes through."""
    if device != CPU:
        for tensor in operands(result):
            tensor.played_device = device  # type: ignore[attr-defined]
    return result


def spread(batch: RunningBatch[str]) -> None:
    """Put the mask and the seen table on GPU 0 and the cache's layers on GPU 1 and GPU 0 by turns,
    as device_map="auto" does with a model too big for one GPU."""
    place(batch.mask, GPU0)
    place(batch.seen, GPU0)
    for i, layer in enumerate(batch.cache.layers):
        place((layer.keys, layer.values), GPU1 if i % 2 == 0 else GPU0)


def test_the_played_gpus_refuse_what_cuda_refuses() -> None:
    """The double is only worth its checks: each is one a real multi-GPU machine makes."""
    with TwoGpus():
        keys = place(torch.arange(12.0).reshape(4, 3), GPU1)
        with pytest.raises(RuntimeError, match="indices should be either on cpu or on the same device"):
            keys[torch.tensor([0, 2], device=GPU0), ...]
        with pytest.raises(RuntimeError, match="same device"):
            keys.index_select(0, torch.tensor([0, 2]))  # index_select takes no CPU index on CUDA
        with pytest.raises(RuntimeError, match="same device"):
            torch.where(place(torch.ones(4, 3, dtype=torch.bool), GPU0), keys, keys)
        assert keys[torch.tensor([0, 2]), ...].device == GPU1
        assert keys[torch.tensor([0, 2], device=GPU1)].device == GPU1
        assert keys.index_select(0, torch.tensor([3]).to(GPU1)).tolist() == [[9.0, 10.0, 11.0]]


def test_rows_leave_and_join_a_batch_whose_cache_is_spread_over_gpus(tiny: PreTrainedModel) -> None:
    seqs = {"a": [5, 6, 7, 8, 9, 10, 11], "b": [20, 21], "c": [30, 31, 32, 33]}
    with torch.no_grad():
        reference, _ = prefill(tiny, list(seqs), list(seqs.values()), pad_id=0, device=CPU)
        batch, _ = prefill(tiny, list(seqs), list(seqs.values()), pad_id=0, device=CPU)
        fresh, _ = prefill(tiny, ["d"], [[40, 41, 42, 43, 44, 45, 46, 47, 48]], pad_id=0, device=CPU)
        reference_fresh, _ = prefill(tiny, ["d"], [[40, 41, 42, 43, 44, 45, 46, 47, 48]], pad_id=0, device=CPU)
    spread(batch)
    spread(fresh)
    with TwoGpus():
        batch.keep([2, 1])  # "a", the widest, leaves: the padding only it needed is trimmed too
        batch.absorb(fresh)
        batch.keep([2, 0])
        devices = [(layer.keys.device, layer.values.device) for layer in batch.cache.layers]
        assert (batch.mask.device, batch.seen.device) == (GPU0, GPU0)
    assert devices == [(GPU1, GPU1), (GPU0, GPU0)]  # every layer stayed where it was
    reference.keep([2, 1])
    reference.absorb(reference_fresh)
    reference.keep([2, 0])
    assert batch.rows == reference.rows == ["d", "c"]
    assert torch.equal(batch.mask, reference.mask) and torch.equal(batch.seen, reference.seen)
    for mine, theirs in zip(batch.cache.layers, reference.cache.layers, strict=True):
        assert torch.equal(mine.keys, theirs.keys) and torch.equal(mine.values, theirs.values)
    with torch.no_grad():  # and it steps on as one that never left the CPU
        torch.testing.assert_close(batch.step(tiny, [50, 51]).logits, reference.step(tiny, [50, 51]).logits)


def test_the_repetition_penalty_reads_the_seen_table_from_the_masks_gpu_while_logits_come_off_another() -> None:
    logits = torch.tensor([[4.0, 3.0, -1.0], [4.0, 3.0, -1.0]])
    seen = torch.tensor([[True, False, False], [False, False, False]])
    rows = [SamplingParams(max_tokens=4, temperature=0.0, top_p=1.0, repetition_penalty=2.0)] * 2
    with TwoGpus():
        place(logits, GPU1)  # the last layers' GPU, where the head is
        place(seen, GPU0)  # the batch's, with its mask
        picks = pick_tokens(logits, seen, rows, [torch.Generator(), torch.Generator()])
    assert picks == [1, 0]


# -- Engine on the real model (slow) -------------------------------------------------------------

MAIN: list[Message] = [{"role": "user", "content": "Write a short story about a lighthouse keeper and a storm."}]
OTHERS: list[tuple[list[Message], int]] = [
    ([{"role": "user", "content": "Hi"}], 6),
    (
        [
            {"role": "system", "content": "You are a careful assistant who answers in full sentences. " * 8},
            {"role": "user", "content": "List three facts about the Moon, one per line, with a short explanation."},
        ],
        8,
    ),
    (
        [
            {"role": "user", "content": "What is 12 times 12?"},
            {"role": "assistant", "content": "144."},
            {"role": "user", "content": "And 13 times 13?"},
        ],
        10,
    ),
]
MAIN_TOKENS = 40


def greedy(max_tokens: int, stop: tuple[str, ...] = ()) -> SamplingParams:
    return SamplingParams(max_tokens=max_tokens, temperature=0.0, top_p=1.0, repetition_penalty=1.0, stop=stop)


@pytest.fixture(scope="module")
def engine(converted_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    # fp32: its kernels give a row the same logits whatever else is in the batch. bf16 (the CPU default where it is
    # native) and int8 do not promise that bit for bit: a greedy reply may then change while others run.
    settings = load_settings(
        {
            "model": str(converted_model_dir),
            "cache_dir": str(tmp_path_factory.mktemp("cache")),
            "warmup": False,
            "dtype": "float32",
            "quantization": "none",
        },
        environ={},
    )
    engine = Engine(settings)
    engine.start()
    assert engine.wait_ready(300), engine.error
    yield engine
    engine.stop()


def collect(events: Iterator[object]) -> tuple[str, Finished]:
    text = ""
    for event in events:
        if isinstance(event, TokenText):
            text += event.text
        elif isinstance(event, Finished):
            return text, event
    raise AssertionError("the stream ended without a Finished event")


def generate(engine: Engine, request_id: str, messages: list[Message], params: SamplingParams) -> tuple[str, Finished]:
    handle = engine.submit(request_id, "tester", engine.build_prompt(messages, params.max_tokens), params)
    return collect(handle.iter_events(timeout=120))


@pytest.fixture(scope="module")
def main_alone(engine: Engine) -> str:
    text, fin = generate(engine, "main-alone", MAIN, greedy(MAIN_TOKENS))
    assert (fin.reason, fin.completion_tokens) == ("length", MAIN_TOKENS), "the reference reply ended early"
    assert len(text) > 40
    return text


@pytest.mark.slow
def test_greedy_reply_is_the_same_alone_and_while_others_join_and_leave(engine: Engine, main_alone: str) -> None:
    others_alone = [
        generate(engine, f"other{i}-alone", messages, greedy(n))[0] for i, (messages, n) in enumerate(OTHERS)
    ]

    triggers = [threading.Event() for _ in OTHERS]
    results: dict[int, tuple[str, Finished]] = {}
    failures: list[BaseException] = []

    def other(i: int) -> None:
        try:
            assert triggers[i].wait(120)
            messages, n = OTHERS[i]
            results[i] = generate(engine, f"other{i}", messages, greedy(n))
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=other, args=(i,)) for i in range(len(OTHERS))]
    for thread in threads:
        thread.start()
    handle = engine.submit("main", "tester", engine.build_prompt(MAIN, MAIN_TOKENS), greedy(MAIN_TOKENS))
    text = ""
    pieces = 0
    join_at = {1: 0, 4: 1, 9: 2}  # after the n-th streamed piece of the main reply, another request arrives
    finished = None
    for event in handle.iter_events(timeout=120):
        if isinstance(event, TokenText):
            text += event.text
            pieces += 1
            if pieces in join_at:
                triggers[join_at[pieces]].set()
        else:
            finished = event
    for trigger in triggers:
        trigger.set()
    for thread in threads:
        thread.join(120)
    assert not failures, failures
    assert finished is not None and (finished.reason, finished.completion_tokens) == ("length", MAIN_TOKENS)

    # The others really joined the main reply's batch mid-flight, and left it before the end.
    main_t = finished.timings
    joined_mid_flight = [
        r[1].timings
        for r in results.values()
        if main_t.first_token < r[1].timings.started and r[1].timings.finished < main_t.finished
    ]
    assert len(joined_mid_flight) >= 2, "the other requests did not overlap the main one; the test proves nothing"

    assert text == main_alone
    for i, (messages, n) in enumerate(OTHERS):
        other_text, other_fin = results[i]
        assert other_fin.completion_tokens <= n
        assert other_text == others_alone[i], f"request {i} ({len(messages)} messages) changed in the batch"


@pytest.mark.slow
def test_cancelled_request_finishes_early(engine: Engine) -> None:
    handle = engine.submit("cancel-me", "tester", engine.build_prompt(MAIN, MAIN_TOKENS), greedy(MAIN_TOKENS))
    events = handle.iter_events(timeout=120)
    first = next(events)
    assert isinstance(first, TokenText)
    handle.cancel()
    _, fin = collect(events)
    assert fin.reason == "cancelled"
    assert 1 <= fin.completion_tokens < MAIN_TOKENS


@pytest.mark.slow
def test_stop_string_cuts_the_text_before_it(engine: Engine, main_alone: str) -> None:
    middle = len(main_alone) // 2
    stop = main_alone[middle : middle + 6]
    expected = main_alone[: main_alone.find(stop)]
    text, fin = generate(engine, "stop", MAIN, greedy(MAIN_TOKENS, stop=("@@never@@", stop)))
    assert fin.reason == "stop"
    assert text == expected
    assert stop not in text
    assert fin.completion_tokens < MAIN_TOKENS


@pytest.mark.slow
def test_max_tokens_gives_length_with_exactly_that_many_tokens(engine: Engine, main_alone: str) -> None:
    text, fin = generate(engine, "short", MAIN, greedy(7))
    assert (fin.reason, fin.completion_tokens) == ("length", 7)
    assert text and main_alone.startswith(text)
    assert fin.prompt_tokens == len(engine.build_prompt(MAIN, 7).ids)


@pytest.mark.slow
def test_text_that_only_looked_like_a_stop_is_flushed_at_length(engine: Engine, main_alone: str) -> None:
    short, fin = generate(engine, "short-plain", MAIN, greedy(7))
    assert fin.reason == "length" and len(short) >= 3
    lookalike = short[-3:] + "\u2603never-generated"  # the reply ends on the start of this stop string
    text, fin = generate(engine, "short-stop", MAIN, greedy(7, stop=(lookalike,)))
    assert (fin.reason, fin.completion_tokens) == ("length", 7)
    assert text == short


@pytest.mark.slow
def test_drain_refuses_new_requests(engine: Engine) -> None:
    """Runs last: the shared engine stops accepting."""
    engine.begin_drain()
    assert engine.state == "draining"
    with pytest.raises(ShuttingDown):
        engine.submit("late", "tester", engine.build_prompt(MAIN, 4), greedy(4))
    assert engine.in_flight == 0 and engine.queue_depth == 0
