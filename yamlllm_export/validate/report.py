"""The outcome of ``validate``: one row per (check, EP), the exit code they add up to, and its renderings:
``parity.json`` (for machines), ``parity.md`` (for pull requests) and a rich table (for the terminal).

Statuses: ``pass``; ``fail`` (a parity or structure failure: exit 1); ``unsupported`` (the build cannot run
on that EP, e.g. a kernel missing for its dtype: reported, never counted as a parity failure); ``n/a``
(the check's premise does not hold for this architecture, e.g. incremental decoding of a bidirectional
model: reported with the reason).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from yamlllm_export.errors import BuildError

PASS, FAIL, UNSUPPORTED, NOT_APPLICABLE = "pass", "fail", "unsupported", "n/a"
EXIT_OK, EXIT_PARITY, EXIT_INPUT = 0, 1, 2


@dataclass(frozen=True)
class CheckResult:
    check: str  # "checker", "prefill", ... (see checks.py / structure.py)
    ep: str  # "cpu", "cuda", or "-" for checks of the file itself
    status: str  # PASS, FAIL, UNSUPPORTED or NOT_APPLICABLE (the check does not hold for this architecture)
    measured: str  # what was measured, as printed
    tolerance: str
    value: float | None = None  # the measured number, where there is one (inf: NaN or inf in the output)
    limit: float | None = None
    detail: str = ""  # where it was worst, or why it failed


@dataclass(frozen=True)
class EpRun:
    ep: str
    status: str  # "ran", "skipped" (not usable on this machine), "unsupported" (cannot run this build), "failed"
    reason: str = ""


@dataclass(frozen=True)
class Report:
    folder: str
    model: dict[str, Any]  # name, target, dtype, parameter_count, versions (build.json)
    settings: dict[str, Any]
    eps: tuple[EpRun, ...]
    results: tuple[CheckResult, ...]
    report_dir: str = ""  # where parity.json and parity.md are written
    requested_eps: tuple[str, ...] = ()  # --ep as given; empty: CPU, and CUDA when usable
    versions: dict[str, str] = field(default_factory=dict)  # of this validation run

    @property
    def failed(self) -> list[CheckResult]:
        return [r for r in self.results if r.status == FAIL]

    @property
    def problem(self) -> str:
        """Why nothing (or not what was asked) was validated; empty when parity ran where asked."""
        tried = [e for e in self.eps if e.status in ("ran", "failed")]  # "failed": a broken graph, a FAIL row
        if not tried:
            why = "; ".join(f"{e.ep}: {e.reason}" for e in self.eps)
            return f"the build runs on none of the execution providers tried ({why}); nothing was validated"
        blocked = [e for e in self.eps if e.ep in self.requested_eps and e.status == UNSUPPORTED]
        if blocked:
            return "; ".join(f"--ep {e.ep}: this build cannot run there ({e.reason})" for e in blocked)
        return ""

    @property
    def exit_code(self) -> int:
        if self.failed:
            return EXIT_PARITY
        return EXIT_INPUT if self.problem else EXIT_OK

    def to_json(self) -> dict[str, Any]:
        def clean(x: Any) -> Any:  # JSON has no inf: NaN/inf outputs are written as the string "inf"
            return "inf" if isinstance(x, float) and not math.isfinite(x) else x

        return {
            "folder": self.folder,
            "model": self.model,
            "settings": self.settings,
            "versions": self.versions,
            "eps": [asdict(e) for e in self.eps],
            "checks": [{k: clean(v) for k, v in asdict(r).items()} for r in self.results],
            "passed": self.exit_code == EXIT_OK,
            "exit_code": self.exit_code,
        }

    def to_markdown(self) -> str:
        m = self.model
        lines = [
            f"# Parity report: {m.get('name', '?')} ({m.get('target', '?')}, {m.get('dtype', '?')})",
            "",
            f"Folder `{self.folder}`; {summary(self)}.",
            "",
            "Settings: " + ", ".join(f"{k} {v}" for k, v in self.settings.items()) + ".",
            "",
            "| check | EP | measured | tolerance | result | detail |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for r in self.results:
            cells = (r.check, r.ep, r.measured, r.tolerance, r.status.upper() if r.status == FAIL else r.status, r.detail)
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        lines += ["", *[f"- {e.ep}: {e.status}" + (f" ({e.reason})" if e.reason else "") for e in self.eps]]
        return "\n".join(lines) + "\n"

    def write(self, report_dir: Path) -> list[Path]:
        try:
            report_dir.mkdir(parents=True, exist_ok=True)
            paths = [report_dir / "parity.json", report_dir / "parity.md"]
            paths[0].write_text(json.dumps(self.to_json(), indent=2) + "\n")
            paths[1].write_text(self.to_markdown())
        except OSError as err:
            raise BuildError(f"{report_dir}: cannot write the report ({err.strerror or err})") from None
        return paths


def summary(report: Report) -> str:
    counts = {status: sum(r.status == status for r in report.results) for status in (PASS, FAIL, UNSUPPORTED, NOT_APPLICABLE)}
    verdict = "FAILED" if counts[FAIL] else ("nothing validated" if report.problem else "all checks passed")
    parts = [f"{counts[PASS]} passed", f"{counts[FAIL]} failed"]
    parts += [f"{counts[k]} {k if k != NOT_APPLICABLE else 'not applicable'}" for k in (UNSUPPORTED, NOT_APPLICABLE) if counts[k]]
    return f"{verdict}: " + ", ".join(parts)
