"""Hub ids as model sources (``import-hf ORG/NAME``, ``build --weights ORG/NAME``, ``--revision``, ``--gguf-file``),
read from a Hugging Face cache laid out on disk (tests/hub_cache.py) in offline mode: no network.

The in-process tests point ``huggingface_hub``'s constants at the tmp cache (they are read from the environment when
it is imported); the SmolLM2 acceptance runs the real command line in a subprocess with ``HF_HUB_CACHE`` and
``HF_HUB_OFFLINE=1`` (conftest's ``smollm2_build``, which test_smollm2.py validates and checks against transformers).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from click.testing import CliRunner

from tests.hf_fixtures import make_hf_model
from tests.hub_cache import lay_out, offline_env, repo_cache
from yamlllm_export.cli import main

REPO = "TinyOrg/tiny-llama"


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory):
    """A tiny LLaMA saved as an HF folder, and a second one (another width) for a second revision."""
    root = tmp_path_factory.mktemp("hub-src")
    make_hf_model("llama", root / "main")
    make_hf_model("llama", root / "v1")
    config = json.loads((root / "v1" / "config.json").read_text())
    config["num_hidden_layers"] = 1  # the tagged revision differs from main by its layer count
    (root / "v1" / "config.json").write_text(json.dumps(config))
    return root


@pytest.fixture
def hub(tmp_path, tiny_hf, monkeypatch):
    """An offline hub cache holding REPO at main (commit a…) and at tag v1 (commit b…)."""
    import huggingface_hub.constants as constants

    cache = tmp_path / "hf-cache"
    lay_out(cache, REPO, tiny_hf / "main", commit="a" * 40)
    lay_out(cache, REPO, tiny_hf / "v1", commit="b" * 40, refs=("v1",))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _layers(path):
    return yaml.safe_load(path.read_text())["num_layers"]


def test_import_hf_reads_a_hub_id_from_the_cache(hub, tiny_hf, tmp_path):
    result = cli("import-hf", REPO, "-o", tmp_path / "hub.yaml")
    assert result.exit_code == 0, result.output
    local = cli("import-hf", tiny_hf / "main", "-o", tmp_path / "local.yaml")
    assert local.exit_code == 0, local.output
    hub_text, local_text = (tmp_path / "hub.yaml").read_text(), (tmp_path / "local.yaml").read_text()
    hub_spec, local_spec = yaml.safe_load(hub_text), yaml.safe_load(local_text)
    assert hub_spec.pop("name") == "tiny-llama"  # named after the id (a snapshot folder is a commit hash)
    assert hub_spec == {k: v for k, v in local_spec.items() if k != "name"}
    assert f"--weights {REPO} -o out/" in hub_text  # the header's build line names the id, not the snapshot


def test_revision_picks_the_tagged_snapshot(hub, tmp_path):
    assert cli("import-hf", REPO, "-o", tmp_path / "main.yaml").exit_code == 0
    assert cli("import-hf", REPO, "--revision", "v1", "-o", tmp_path / "v1.yaml").exit_code == 0
    assert cli("import-hf", REPO, "--revision", "b" * 40, "-o", tmp_path / "sha.yaml").exit_code == 0
    assert (_layers(tmp_path / "main.yaml"), _layers(tmp_path / "v1.yaml"), _layers(tmp_path / "sha.yaml")) == (2, 1, 1)


def test_a_local_folder_wins_over_the_hub_id(hub, tiny_hf, tmp_path, monkeypatch):
    local = tmp_path / "work" / REPO
    local.mkdir(parents=True)
    for f in (tiny_hf / "v1").iterdir():  # the local folder holds the 1-layer model; the cache's main has 2
        (local / f.name).write_bytes(f.read_bytes())
    monkeypatch.chdir(tmp_path / "work")
    assert cli("import-hf", REPO, "-o", tmp_path / "out.yaml").exit_code == 0
    assert _layers(tmp_path / "out.yaml") == 1
    assert "Imported from the Hugging Face model in" in (tmp_path / "out.yaml").read_text()


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["import-hf", "NoOrg/no-model"], "NoOrg/no-model: not a local path, and not in the Hugging Face cache"),
        (["import-hf", REPO, "--revision", "v9"], f"{REPO}: not a local path, and not in the Hugging Face cache"),
        (["import-gguf", REPO], f"{REPO}: a hub repository; name the GGUF file inside it with --gguf-file"),
        (["import-gguf", REPO, "--gguf-file", "missing.gguf"], f"--gguf-file missing.gguf: not in the hub repository {REPO}"),
    ],
    ids=["unknown-id", "unknown-revision", "gguf-repo-without-file", "gguf-file-not-cached"],
)
def test_an_id_neither_cached_nor_reachable_is_one_line(hub, tmp_path, args, named):
    out = tmp_path / "out.yaml"
    result = cli(*args, "-o", out)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {named}"), result.output
    assert "offline mode" in lines[0] or "--gguf-file" in lines[0]
    assert not out.exists()


def test_build_weights_from_a_hub_id_equals_the_local_folder(hub, tiny_hf, tmp_path):
    assert cli("import-hf", REPO, "-o", tmp_path / "m.yaml").exit_code == 0
    by_id = cli("build", tmp_path / "m.yaml", "--weights", REPO, "-o", tmp_path / "hub")
    assert by_id.exit_code == 0, by_id.output
    by_path = cli("build", tmp_path / "m.yaml", "--weights", tiny_hf / "main", "-o", tmp_path / "local")
    assert by_path.exit_code == 0, by_path.output
    hub_src, local_src = (json.loads((tmp_path / d / "build.json").read_text())["weights"] for d in ("hub", "local"))
    assert hub_src["sha256"] == local_src["sha256"]
    assert hub_src["path"] == str((repo_cache(hub, REPO) / "snapshots" / ("a" * 40)).resolve())


def test_revision_without_weights_is_refused(tmp_path):
    result = cli("build", "models/tiny-llama.yaml", "--revision", "v1", "-o", tmp_path / "out")
    assert result.exit_code == 2 and "--revision and --gguf-file need --weights" in result.output
    assert not (tmp_path / "out").exists()


def test_gguf_file_inside_a_hub_repo(hub, tmp_path):
    """``import-gguf ORG/NAME --gguf-file F`` and ``build --weights ORG/NAME --gguf-file F`` read the cached file."""
    from tests.gguf_fixtures import write_gguf

    model = make_hf_model("llama", tmp_path / "src")
    src = tmp_path / "gguf-src"
    src.mkdir()
    write_gguf(model, "llama", src / "tiny.gguf")
    lay_out(hub, "TinyOrg/tiny-gguf", src)
    result = cli("import-gguf", "TinyOrg/tiny-gguf", "--gguf-file", "tiny.gguf", "-o", tmp_path / "g.yaml")
    assert result.exit_code == 0, result.output
    built = cli("build", tmp_path / "g.yaml", "--weights", "TinyOrg/tiny-gguf", "--gguf-file", "tiny.gguf", "-o", tmp_path / "g")
    assert built.exit_code == 0, built.output
    source = json.loads((tmp_path / "g" / "build.json").read_text())["weights"]
    assert source["path"] == str((repo_cache(hub, "TinyOrg/tiny-gguf") / "snapshots" / ("a" * 40) / "tiny.gguf").resolve())


@pytest.mark.xdist_group(name="smollm2")
def test_smollm2_from_its_hub_id_offline(smollm2_build, smollm2_hub_cache):
    """The acceptance: conftest's ``smollm2_build`` ran ``import-hf HuggingFaceTB/SmolLM2-135M-Instruct`` and
    ``build --weights HuggingFaceTB/SmolLM2-135M-Instruct`` with HF_HUB_OFFLINE=1 on the laid-out cache."""
    info = json.loads((smollm2_build / "build.json").read_text())
    assert info["weights"]["path"].startswith(str(repo_cache(smollm2_hub_cache, "HuggingFaceTB/SmolLM2-135M-Instruct").resolve()))
    assert (smollm2_build / "tokenizer.json").is_file()  # the snapshot's tokenizer came along
    header = (smollm2_build.parent / "smollm2.yaml").read_text()
    assert "--weights HuggingFaceTB/SmolLM2-135M-Instruct -o out/" in header
    # the same command line with an id the cache does not hold: one line naming it, exit 2
    env = offline_env(smollm2_hub_cache)
    missing = subprocess.run(
        [sys.executable, "-m", "yamlllm_export", "import-hf", "HuggingFaceTB/SmolLM2-360M", "-o", str(smollm2_build.parent / "x.yaml")],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert missing.returncode == 2 and missing.stderr.startswith("error: HuggingFaceTB/SmolLM2-360M: not a local path"), missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
