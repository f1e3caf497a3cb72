"""Generated specs through the CLI (strategies: tests/spec_strategies.py, derived from the schema).

- A valid spec is either refused up front by ``check --target T`` (exit 2, one ``error:`` line naming a key
  path; ``build`` then says the same and writes nothing) or builds for T and passes ``validate``; T is one
  target per example, chosen from the spec (builds are the cost). Contradictory combinations come from here: the strategy
  follows the schema, not spec/rules.py.
- A broken spec gets exit 2 and one ``error:`` line naming the key path that was broken (the file and line for a
  nesting past the reader's limit), from ``check`` and from ``build``, no traceback, and nothing in the output
  folder's parent. Breakages include NaN, ±inf, huge, subnormal and negative-zero floats at every number the spec
  holds or could hold, and too deep a nesting at every container (issue 29); the summary line counts each kind.

CI runs a fixed, derandomized handful; ``YAMLLLM_FUZZ=long`` runs hundreds with a random seed (docs/validation.md has the
counts of the last long run). Each test prints its counts in the terminal summary (conftest.py).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import zlib
from collections import Counter
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, Phase, given, settings

from tests.conftest import ROOT, TARGETS
from tests.spec_strategies import EXTREME_KINDS, Broken, invalid_specs, is_negative_zero, node_at, valid_specs
from yamlllm_export.cli import main
from yamlllm_export.errors import SpecError
from yamlllm_export.spec import load_spec
from yamlllm_export.spec.load import dump_yaml

LONG = os.environ.get("YAMLLLM_FUZZ") == "long"
EXAMPLES = {
    "valid": 150 if LONG else 10,
    "invalid": 1000 if LONG else 30,
    "extreme": 60 if LONG else 3,  # per kind of issue 29's (5), drawn alone so that CI draws each of them
    "loads back": 1000 if LONG else 100,
}  # long: ~25 min on 2 busy cores
_FUZZ = settings(
    derandomize=not LONG,  # CI: the same examples every run
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def fuzz(examples: int) -> settings:
    """Generation only: the properties below collect every failing spec and fail once at the end, listing them (a
    long run reports all it finds, not the first; shrinking a failing build would cost dozens of builds)."""
    return settings(_FUZZ, max_examples=examples, phases=[Phase.explicit, Phase.generate])


def target_of(spec: dict) -> str:
    """The target an example builds for, a function of the spec (hypothesis draws the first choices of a
    sampled_from far more often than the others)."""
    return TARGETS[zlib.crc32(json.dumps(spec, sort_keys=True).encode()) % len(TARGETS)]


def _report(failures: list[str]) -> str:
    return f"{len(failures)} failing specs:\n\n" + "\n\n".join(failures)


def _write(spec: object, folder: Path) -> Path:
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True))
    return path


def _cli(*args: str) -> Result:
    env = {"YAMLLLM_DEBUG": ""}  # the user's view: one line, never a traceback
    return CliRunner(env=env).invoke(main, list(args))


def error_path(result: Result) -> str:
    """The key path of a clean refusal: exit 2, no exception but the exit, one ``error: PATH: ...`` line."""
    assert result.exit_code == 2, f"exit {result.exit_code}: {result.output[-2000:]}"
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    path = lines[0].removeprefix("error: ").split(": ", 1)[0]
    assert node_at(path) is not None, f"{lines[0]!r} does not begin with a key path of the schema"
    return path


def file_refusal(result: Result, path: Path) -> str:
    """A clean refusal naming the file and line, not a key path (too deep a nesting)."""
    assert result.exit_code == 2, f"exit {result.exit_code}: {result.output[-2000:]}"
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and re.fullmatch(rf"error: {re.escape(str(path))}:\d+:\d+: YAML nested deeper than .*", lines[0]), result.stderr
    return lines[0]


def _floats(data: object) -> list[float]:
    if isinstance(data, dict):
        return [f for v in data.values() for f in _floats(v)]
    if isinstance(data, list):
        return [f for v in data for f in _floats(v)]
    return [data] if isinstance(data, float) else []


def _left_behind(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != "spec.yaml")


def test_valid_specs_build_and_validate_or_are_refused(record_property):
    counts: Counter[str] = Counter()
    failures: list[str] = []

    @fuzz(EXAMPLES["valid"])
    @given(spec=valid_specs())
    def one(spec: dict) -> None:
        counts["examples"] += 1
        counts["negative zero"] += any(is_negative_zero(f) for f in _floats(spec))
        target = target_of(spec)
        with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
            path = _write(spec, Path(tmp))
            try:
                checked = _cli("check", str(path), "--target", target)
                if checked.exit_code != 0:  # then build refuses it too, with the same line, before writing anything
                    error_path(checked)
                    refused = _cli("build", str(path), "-o", f"{tmp}/out", "--target", target)
                    assert (refused.exit_code, refused.stderr) == (checked.exit_code, checked.stderr)
                    assert _left_behind(Path(tmp)) == [], "build wrote something"
                    counts["refused"] += 1
                    return
                built = _cli("build", str(path), "-o", f"{tmp}/out", "--target", target, "--validate")
                assert built.exit_code == 0, f"check accepts it, build --validate says:\n{built.output[-3000:]}"
                counts["built"] += 1
            except AssertionError as err:
                failures.append(f"--target {target}\n{path.read_text()}{err}")

    one()
    record_property(
        "fuzz",
        f"valid specs: {counts['examples']} examples ({counts['negative zero']} with a -0.0), {counts['built']} built and validated, "
        f"{counts['refused']} refused by check, {len(failures)} failures",
    )
    assert not failures, _report(failures)


def _refused_in_one_line(record_property, what: str, examples: int, kinds: tuple[str, ...] | None) -> None:
    counts: Counter[str] = Counter()
    failures: list[str] = []

    @fuzz(examples)
    @given(broken=invalid_specs(kinds))
    def one(broken: Broken) -> None:
        counts["examples"] += 1
        counts[broken.kind] += 1
        with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
            path = _write(broken.spec, Path(tmp))
            try:
                check, build = _cli("check", str(path)), _cli("build", str(path), "-o", f"{tmp}/out")
                if broken.kind == "deep nesting":
                    assert file_refusal(check, path) == file_refusal(build, path)
                else:
                    assert error_path(check) == broken.path, broken.kind
                    assert error_path(build) == broken.path, broken.kind
                assert _left_behind(Path(tmp)) == [], "build wrote something"
            except AssertionError as err:
                failures.append(f"{broken.kind} at {broken.path}\n{path.read_text()}{err}")

    one()
    drawn = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()) if k != "examples")
    record_property("fuzz", f"{what}: {counts['examples']} examples ({drawn}), {len(failures)} failures")
    assert not failures, _report(failures)


def test_invalid_specs_get_one_line_naming_the_key(record_property):
    _refused_in_one_line(record_property, "invalid specs", EXAMPLES["invalid"], None)


@pytest.mark.parametrize("kind", EXTREME_KINDS, ids=str)
def test_extreme_values_and_deep_nesting_get_one_line(record_property, kind: str):
    """NaN, ±inf, huge, subnormal and negative-zero floats where a number goes, and nesting past the reader's
    limit at any container (issue 29): each kind drawn by itself too, so a CI run counts all of them."""
    _refused_in_one_line(record_property, f"extreme values, {kind}", EXAMPLES["extreme"], (kind,))


@fuzz(EXAMPLES["loads back"])
@given(spec=valid_specs())
def test_the_normalized_spec_loads_back(spec: dict):
    """What build writes as model.yaml (``to_dict``) loads back to the same spec: validate, generate and bench
    reload it."""
    try:
        loaded = load_spec(spec)
    except SpecError:
        return  # refused up front: the other tests check how
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        path = Path(tmp) / "model.yaml"
        path.write_text(dump_yaml(loaded.to_dict()))  # as the writer and import-hf write it
        assert load_spec(path) == loaded


@fuzz(3)
@given(broken=invalid_specs())
def test_a_real_process_prints_what_the_in_process_cli_prints(broken: Broken):
    """The in-process runner stands for the user's terminal: same exit code, same one line on stderr."""
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        path = _write(broken.spec, Path(tmp))
        args = ["build", str(path), "-o", f"{tmp}/out"]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.pop("YAMLLLM_DEBUG", None)
        real = subprocess.run([sys.executable, "-m", "yamlllm_export", *args], capture_output=True, text=True, env=env, timeout=120)
        here = _cli(*args)
        assert (real.returncode, real.stderr, real.stdout) == (here.exit_code, here.stderr, here.stdout)
        assert _left_behind(Path(tmp)) == []
