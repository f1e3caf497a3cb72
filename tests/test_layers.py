"""The layer rules: what may import what inside ``yamlllm_export``, read from the source with ``ast``.

Every import statement counts, those inside functions too (a lazy import is still a dependency), except
``if TYPE_CHECKING:`` blocks, which never run. The checker is tested on synthetic packages that break one rule
each, so a rule that could not fire would show. ``runtime`` is also checked by running it: what ``generate``
reaches, ``--ep cuda`` included, must leave torch unimported.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import yamlllm_export

ROOT = Path(yamlllm_export.__file__).parent
ONNX = ("onnx", "onnxscript", "onnx_ir", "onnxruntime")
TERMINAL = ("click", "rich")


@dataclass(frozen=True)
class Rule:
    """Modules of subpackage ``within`` import none of ``banned`` (external names, or ``.sub`` for ours)."""

    within: str
    banned: tuple[str, ...]
    why: str


RULES = (
    Rule("spec", ("torch", *ONNX), "the spec is typed data, validated without a tensor library"),
    Rule("ops", (".model", ".spec"), "custom ops know neither modules nor YAML"),
    Rule("model", (*ONNX, ".export", ".lowerings"), "the PyTorch model knows nothing of ONNX"),
    Rule("runtime", ("torch",), "generation runs where PyTorch is not installed"),
)


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted
    target: str  # the imported module, dotted and absolute
    line: int
    at_import: bool  # runs when the module is imported (not inside a function body)


@dataclass(frozen=True)
class Package:
    """A package's modules (dotted name → file) and every import they make."""

    name: str
    files: dict[str, Path]
    imports: tuple[Import, ...]

    @classmethod
    def read(cls, root: Path) -> Package:
        files = {}
        for path in sorted(root.rglob("*.py")):
            parts = path.relative_to(root.parent).with_suffix("").parts
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
        imports = tuple(i for module, path in files.items() for i in _imports(module, path, files))
        return cls(root.name, files, imports)

    def subpackage(self, module: str) -> str | None:
        """``spec`` for ``pkg.spec.load``; None for the package's own top-level modules (cli, errors, …)."""
        parts = module.split(".")
        if len(parts) < 2 or parts[0] != self.name:
            return None
        return parts[1] if f"{self.name}.{parts[1]}" in self.files and self.files[f"{self.name}.{parts[1]}"].name == "__init__.py" else None


def _imports(module: str, path: Path, files: dict[str, Path]) -> Iterator[Import]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def visit(node: ast.AST, at_import: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                yield from (i for stmt in child.orelse for i in visit(ast.Module([stmt], []), at_import))
                continue
            if isinstance(child, ast.Import):
                yield from (Import(module, a.name, child.lineno, at_import) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # relative: resolve against this module's package
                    anchor = package.rsplit(".", child.level - 1)[0] if child.level > 1 else package
                    base = f"{anchor}.{base}" if base else anchor
                for alias in child.names:  # `from pkg import submodule` imports the submodule
                    sub = f"{base}.{alias.name}"
                    yield Import(module, sub if sub in files else base, child.lineno, at_import)
            inner = at_import and not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            yield from visit(child, inner)

    yield from visit(ast.parse(path.read_text(), str(path)), True)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _matches(target: str, banned: str, package: str) -> bool:
    name = f"{package}{banned}" if banned.startswith(".") else banned
    return target == name or target.startswith(name + ".")


def rule_violations(pkg: Package, rules: tuple[Rule, ...] = RULES) -> list[str]:
    out = []
    for i in pkg.imports:
        for rule in rules:
            if pkg.subpackage(i.module) == rule.within and any(_matches(i.target, b, pkg.name) for b in rule.banned):
                out.append(f"{pkg.files[i.module]}:{i.line}: {i.module} imports {i.target} ({rule.why})")
    return out


def terminal_violations(pkg: Package) -> list[str]:
    """Only CLI modules (``cli*.py``) import click or rich: the library returns values and raises errors."""
    return [
        f"{pkg.files[i.module]}:{i.line}: {i.module} imports {i.target}, but only cli*.py modules talk to the terminal"
        for i in pkg.imports
        if any(_matches(i.target, t, pkg.name) for t in TERMINAL) and not pkg.files[i.module].name.startswith("cli")
    ]


def package_cycles(pkg: Package) -> list[str]:
    """Cycles in the graph of subpackages (an edge for any import, lazy ones too), each as a path."""
    edges: dict[str, set[str]] = {}
    for i in pkg.imports:
        a, b = pkg.subpackage(i.module), pkg.subpackage(i.target)
        if a and b and a != b:
            edges.setdefault(a, set()).add(b)
    cycles = set()
    for start in sorted(edges):
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in sorted(edges.get(node, ())):
                if nxt == start:
                    cycles.add(tuple(path))
                elif nxt not in path and nxt > start:  # each cycle found once, from its smallest member
                    stack.append((nxt, [*path, nxt]))
    return sorted(" -> ".join((*c, c[0])) for c in cycles)


def reached_externals(pkg: Package, subpackage: str) -> list[str]:
    """External modules that ``subpackage`` can load: through every import of its own modules and of the
    package's modules they import (any of their functions may be called, so lazy imports count), and the
    import-time imports of the parent packages that importing a module executes (the root's facade)."""
    own = [m for m in pkg.files if pkg.subpackage(m) == subpackage]
    called, executed, found = set(), set(), []
    todo = [(m, True) for m in own]  # (module, whether its functions may run)
    while todo:
        module, calls = todo.pop()
        if module in (called if calls else executed):
            continue
        (called if calls else executed).add(module)
        parts = module.split(".")
        todo += [(".".join(parts[:k]), False) for k in range(1, len(parts)) if ".".join(parts[:k]) in pkg.files]
        for i in pkg.imports:
            if i.module != module or not (calls or i.at_import):
                continue
            if i.target in pkg.files:
                todo.append((i.target, True))
            elif i.target.split(".")[0] != pkg.name:
                found.append(f"{module} imports {i.target}")
    return found


def _torch(reached: list[str]) -> list[str]:
    return [r for r in reached if r.split(" imports ")[1].split(".")[0] == "torch"]


# --- the real package -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ours() -> Package:
    return Package.read(ROOT)


def test_subpackage_rules_hold(ours: Package) -> None:
    assert rule_violations(ours) == []


def test_only_cli_modules_use_the_terminal(ours: Package) -> None:
    assert terminal_violations(ours) == []


def test_no_cycles_between_subpackages(ours: Package) -> None:
    assert package_cycles(ours) == []


def test_runtime_reaches_no_torch(ours: Package) -> None:
    assert _torch(reached_externals(ours, "runtime")) == []


def test_generate_and_ep_cuda_run_without_torch(built) -> None:
    """The whole generate path in a fresh interpreter, CUDA detection and a CUDA session attempt included:
    torch is never imported (on a machine without a GPU ``--ep cuda`` fails with its one-line reason)."""
    folder = built("tiny-llama", "ort")
    code = textwrap.dedent(f"""
        import sys
        from click.testing import CliRunner
        from yamlllm_export.cli import main
        from yamlllm_export.runtime.session import EpUnsupported, availability, open_session
        from yamlllm_export.runtime import Generator
        for ep, codes in (("cpu", (0,)), ("cuda", (0, 2))):  # 2: no usable GPU here, said in one line
            args = ["generate", {str(folder)!r}, "--prompt-ids", "1 2 3", "--max-new-tokens", "2", "--ep", ep]
            result = CliRunner().invoke(main, args)
            assert result.exit_code in codes, (ep, result.output)
        availability("cuda")
        try:
            open_session({str(folder)!r}, "cuda")
        except EpUnsupported:
            pass
        assert len(Generator({str(folder)!r}).generate([[1, 2]], max_new_tokens=2).tokens[0]) == 2
        loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
        assert not loaded, loaded[:5]
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]


# --- the checker on synthetic packages: each rule fires when broken -----------------------------------------

CLEAN = {
    "__init__.py": "from fake import errors\ndef build():\n    from fake.model import attention\n",  # a facade
    "errors.py": "",
    "cli.py": "import click\nfrom fake.runtime import gen\n",
    "spec/__init__.py": "",
    "spec/types.py": "from fake.errors import *\n",
    "ops/__init__.py": "import torch\n",
    "model/__init__.py": "",
    "model/attention.py": "import torch\nfrom fake.ops import attention\nfrom fake.spec import types\n",
    "export/__init__.py": "",
    "export/writer.py": "import onnx\nfrom fake.model import attention\nfrom fake.runtime import gen\n",
    "runtime/__init__.py": "",
    "runtime/gen.py": "import onnxruntime\nfrom fake.spec import types\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import torch\n",
}
BROKEN = {  # files that break one rule, and the words its report must contain
    "spec-imports-torch": ({"spec/types.py": "def f():\n    import torch.nn\n"}, "fake.spec.types imports torch.nn"),
    "ops-imports-model": ({"ops/rms.py": "from fake.model import attention\n"}, "fake.ops.rms imports fake.model.attention"),
    "ops-imports-spec": ({"ops/rms.py": "from fake.spec.types import X\n"}, "fake.ops.rms imports fake.spec.types"),
    "model-imports-onnxscript": ({"model/norms.py": "from onnxscript import opset18\n"}, "fake.model.norms imports onnxscript"),
    "model-imports-export": ({"model/norms.py": "from fake.export import writer\n"}, "fake.model.norms imports fake.export.writer"),
    "runtime-imports-torch": ({"runtime/gen.py": "import numpy\ndef run():\n    import torch\n"}, "fake.runtime.gen imports torch"),
    "runtime-reaches-torch-through-a-module": (
        {"util.py": "def gpu():\n    import torch\n", "runtime/gen.py": "from fake import util\n"},
        "runtime reaches torch: fake.util imports torch",
    ),
    "runtime-reaches-torch-through-the-facade": (
        {"__init__.py": "import fake.util\n", "util.py": "import torch\n"},
        "runtime reaches torch: fake.util imports torch",
    ),
    "library-prints-with-rich": (
        {"export/report.py": "def show():\n    from rich.table import Table\n"},
        "fake.export.report imports rich.table",
    ),
    "cycle": ({"runtime/gen.py": "from fake.export import writer\n"}, "export -> runtime -> export"),
}


def _fake(tmp_path: Path, extra: dict[str, str]) -> Package:
    for name, source in {**CLEAN, **extra}.items():
        path = tmp_path / "fake" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    return Package.read(tmp_path / "fake")


def _all_reports(pkg: Package) -> list[str]:
    runtime_torch = [f"runtime reaches torch: {x}" for x in _torch(reached_externals(pkg, "runtime"))]
    return rule_violations(pkg) + terminal_violations(pkg) + package_cycles(pkg) + runtime_torch


def test_checker_passes_the_clean_fake(tmp_path: Path) -> None:
    assert _all_reports(_fake(tmp_path, {})) == []


@pytest.mark.parametrize("case", sorted(BROKEN), ids=sorted(BROKEN))
def test_checker_reports_each_broken_rule(tmp_path: Path, case: str) -> None:
    files, expected = BROKEN[case]
    reports = _all_reports(_fake(tmp_path, files))
    assert any(expected in r for r in reports), reports
