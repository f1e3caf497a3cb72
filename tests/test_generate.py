"""``Generator`` on ONNX Runtime: the PyTorch model's greedy continuation for every tiny model, batches equal
to their prompts alone, reproducible sampling, stop tokens."""

from __future__ import annotations

import numpy as np
import pytest

from tests.generate_cases import MIN_GAP, NEW_TOKENS, ORT_MODELS, PROMPT, generation_spec, torch_greedy
from yamlllm_export.errors import GenerationError
from yamlllm_export.runtime import Generator, SamplingOptions


@pytest.fixture(scope="module")
def generator(export_case):
    """generator(model) -> a CPU ``Generator`` on the ``generation_spec(model)`` build, one per module."""
    cache: dict[str, Generator] = {}

    def get(model: str) -> Generator:
        if model not in cache:
            cache[model] = Generator(export_case(f"gen-{model}", generation_spec(model), "ort"))
        return cache[model]

    return get


@pytest.mark.parametrize("model", [pytest.param(m, marks=pytest.mark.xdist_group(name=f"gen-{m}")) for m in ORT_MODELS])
def test_greedy_equals_pytorch(generator, model):
    expected, gap = torch_greedy(generation_spec(model))
    assert gap > MIN_GAP, f"unsound reference: a top-2 logit gap of {gap:.1e} on the greedy path"
    result = generator(model).generate([PROMPT], max_new_tokens=NEW_TOKENS)
    assert result.tokens[0] == expected
    assert result.finish_reasons[0] == ("length" if len(expected) == NEW_TOKENS else "stop")


@pytest.mark.xdist_group(name="gen-tiny-llama")
def test_batch_with_left_padding_equals_each_prompt_alone(generator):
    gen = generator("tiny-llama")
    prompts = [[5, 9, 200, 31, 2, 77, 13], [8], [150, 151, 152]]
    batch = gen.generate(prompts, max_new_tokens=24)
    alone = [gen.generate([p], max_new_tokens=24).tokens[0] for p in prompts]
    assert list(batch.tokens) == alone
    assert len({len(t) for t in alone}) == 1 or "stop" in batch.finish_reasons


@pytest.mark.xdist_group(name="gen-tiny-llama")
def test_seeded_sampling_repeats_and_top_k_1_is_greedy(generator):
    gen = generator("tiny-llama")
    options = SamplingOptions(do_sample=True, temperature=1.5, top_k=40, top_p=0.95, seed=7)
    first, again = (gen.generate([PROMPT], max_new_tokens=32, sampling=options).tokens for _ in range(2))
    assert first == again
    other = gen.generate([PROMPT], max_new_tokens=32, sampling=SamplingOptions(do_sample=True, temperature=1.5, seed=8)).tokens
    assert other != first, "a different seed should sample differently at temperature 1.5"
    greedy = gen.generate([PROMPT], max_new_tokens=32).tokens
    top1 = gen.generate([PROMPT], max_new_tokens=32, sampling=SamplingOptions(do_sample=True, top_k=1, temperature=3.0, seed=1)).tokens
    assert top1 == greedy != first


@pytest.mark.xdist_group(name="gen-tiny-llama")
def test_stop_tokens_end_a_row_and_are_not_returned(generator):
    gen = generator("tiny-llama")
    greedy = gen.generate([PROMPT], max_new_tokens=16, stop_tokens=()).tokens[0]
    stop = greedy[5]
    cut = greedy[: greedy.index(stop)]
    result = gen.generate([PROMPT, [8]], max_new_tokens=16, stop_tokens=[stop])
    assert result.tokens[0] == cut and result.finish_reasons[0] == "stop"
    streamed: list[tuple[int, int]] = []
    gen.generate([PROMPT], max_new_tokens=16, stop_tokens=[stop], on_token=lambda row, t: streamed.append((row, t)))
    assert streamed == [(0, t) for t in cut]


@pytest.mark.xdist_group(name="gen-tiny-llama")
def test_repetition_penalty_changes_a_repeating_continuation(generator):
    gen = generator("tiny-llama")
    plain = gen.generate([PROMPT], max_new_tokens=48, stop_tokens=()).tokens[0]
    penalized = gen.generate([PROMPT], max_new_tokens=48, stop_tokens=(), sampling=SamplingOptions(repetition_penalty=1.5)).tokens[0]
    repeats = lambda tokens: len(tokens) - len(set(tokens))  # noqa: E731
    assert repeats(penalized) < repeats(plain)


@pytest.mark.xdist_group(name="gen-tiny-llama")
@pytest.mark.parametrize(
    ("prompts", "message"),
    [([[]], "at least one token"), ([[1, 256]], "token id 256 is outside the vocabulary"), ([list(range(1, 129))], "leaves no room")],
    ids=["empty", "out-of-vocab", "too-long"],
)
def test_bad_prompts_are_refused(generator, prompts, message):
    with pytest.raises(GenerationError, match=message):
        generator("tiny-llama").generate(prompts)


@pytest.mark.xdist_group(name="gen-tiny-llama")
def test_generation_stops_at_the_context_end(export_case):
    gen = Generator(export_case("gen-tiny-llama", generation_spec("tiny-llama"), "ort"))
    context = gen.spec.embedding.max_position_embeddings
    result = gen.generate([list(range(1, context - 3))], max_new_tokens=50, stop_tokens=())
    assert len(result.tokens[0]) == 4 and result.finish_reasons == ("length",)


def test_sampling_filters():
    from yamlllm_export.runtime.sampling import filter_top_k, filter_top_p, penalize_repeats

    logits = np.log(np.array([[0.5, 0.2, 0.15, 0.1, 0.05]]))
    assert np.isfinite(filter_top_k(logits, 2)).tolist() == [[True, True, False, False, False]]
    assert np.isfinite(filter_top_p(logits, 0.7)).tolist() == [[True, True, False, False, False]]  # 0.5 + 0.2 reaches 0.7
    assert np.isfinite(filter_top_p(logits, 0.71)).tolist() == [[True, True, True, False, False]]
    assert np.isfinite(filter_top_p(logits, 0.01)).sum() == 1  # the top token always stays
    seen = np.array([[True, False, True, False, False]])
    out = penalize_repeats(np.array([[2.0, 1.0, -1.0, 0.5, 0.0]]), seen, 2.0)
    assert out.tolist() == [[1.0, 1.0, -2.0, 0.5, 0.0]]
    with pytest.raises(GenerationError, match="--top-p"):
        SamplingOptions(top_p=0.0)
