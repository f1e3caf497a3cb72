"""``yamlllm-export generate`` and ``build --tokenizer`` on good and bad input."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from tests.conftest import MODELS
from yamlllm_export.cli import main
from yamlllm_export.runtime import Generator

WORDS = ["<unk>", "the", "cat", "sat", "on", "a", "mat", "and", "dog"]


def _tokenizer_json(path, words):
    tokenizers = pytest.importorskip("tokenizers")
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tok.save(str(path))
    return path


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.xdist_group(name="tiny-llama")
def test_prompt_ids_stream_the_generators_tokens(built):
    folder = built("tiny-llama", "ort")
    result = _run("generate", folder, "--prompt-ids", "5 6, 7 8", "--max-new-tokens", "12", "--stats")
    assert result.exit_code == 0, result.output
    expected = Generator(folder).generate([[5, 6, 7, 8]], max_new_tokens=12).tokens[0]
    assert result.stdout.split() == [str(t) for t in expected]
    assert "1 prompt(s), 4 prompt tokens, 12 new tokens (length)" in result.stderr and "tok/s" in result.stderr


@pytest.mark.xdist_group(name="tiny-llama")
def test_a_batch_prints_one_line_per_prompt_and_sampling_repeats_with_a_seed(built):
    folder = built("tiny-llama", "ort")
    args = ["generate", folder, "--prompt-ids", "5 6 7", "--prompt-ids", "9", "--max-new-tokens", "6", "--top-k", "20", "--top-p", "0.9"]
    first, again = _run(*args, "--temperature", "0.8", "--seed", "3"), _run(*args, "--temperature", "0.8", "--seed", "3")
    assert first.exit_code == 0, first.output
    assert len(first.stdout.splitlines()) == 2 and first.stdout == again.stdout


@pytest.mark.xdist_group(name="tiny-llama")
def test_prompt_text_without_a_tokenizer_names_the_fix(built):
    result = _run("generate", built("tiny-llama", "ort"), "--prompt", "Hello")
    assert result.exit_code == 2
    assert (
        result.stderr.count("\n") == 1
        and "no tokenizer.json" in result.stderr
        and "build" in result.stderr
        and "--tokenizer" in result.stderr
    )


@pytest.mark.xdist_group(name="tiny-llama")
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--prompt", "a", "--prompt-ids", "1"], "one of the two"),
        ([], "one of the two"),
        (["--prompt-ids", "1 x"], "is not a list of token ids"),
        (["--prompt-ids", "1 999"], "token id 999 is outside the vocabulary [0, 256)"),
        (["--prompt-ids", "1", "--temperature", "0"], "--temperature: 0.0 must be > 0"),
        (["--prompt-ids", "1", "--top-p", "1.5"], "--top-p: 1.5 must be in (0, 1]"),
    ],
    ids=["both-prompts", "no-prompt", "bad-ids", "out-of-vocab", "zero-temperature", "bad-top-p"],
)
def test_bad_generate_input_is_one_line_exit_2(built, args, message):
    result = _run("generate", built("tiny-llama", "ort"), *args)
    assert result.exit_code == 2 and result.stderr.startswith("error: ") and message in result.stderr, result.output


def test_generate_on_a_folder_that_is_no_model(tmp_path):
    result = _run("generate", tmp_path, "--prompt-ids", "1")
    assert result.exit_code == 2 and "not a model folder" in result.stderr


def test_build_tokenizer_then_prompt_text(tmp_path):
    source = tmp_path / "tok"
    source.mkdir()
    _tokenizer_json(source / "tokenizer.json", WORDS)
    (source / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 128}))
    out = tmp_path / "model"
    built = _run("build", MODELS / "tiny-llama.yaml", "-o", out, "--tokenizer", source)
    assert built.exit_code == 0, built.output
    assert (out / "tokenizer.json").read_text() == (source / "tokenizer.json").read_text() and (out / "tokenizer_config.json").is_file()
    result = _run("generate", out, "--prompt", "the cat sat on", "--max-new-tokens", "5")
    assert result.exit_code == 0, result.output
    expected = Generator(out).generate([[1, 2, 3, 4]], max_new_tokens=5).tokens[0]
    decoded = " ".join(WORDS[t] for t in expected if t < len(WORDS))  # ids past the tokenizer's vocabulary decode to nothing
    assert result.stdout.split() == decoded.split()


def test_build_refuses_a_tokenizer_larger_than_the_vocabulary(tmp_path):
    tok = _tokenizer_json(tmp_path / "tokenizer.json", WORDS + [f"w{i}" for i in range(300)])
    result = _run("build", MODELS / "tiny-llama.yaml", "-o", tmp_path / "out", "--tokenizer", tok)
    assert result.exit_code == 2 and "token id 308 does not fit the model's embedding.vocab_size 256" in result.stderr
    assert not (tmp_path / "out").exists()
