"""Alternated rounds over systems that each live in a worker process (``bench.worker``).

A noisy shared machine swings by 2-3x between runs, so systems are never measured in blocks: every round
runs each system once, in an order rotated from round to round, the first ``warmup`` rounds are dropped,
and the statistics are medians over the rest. Ratios of medians from the same run are what to compare.

``fresh=True`` starts a new worker (a new process and session) for every round and drops ``warmup`` runs
inside each: one session's draw of memory placement can make all its MatMuls 3-4 % faster or slower for
as long as it lives (seen on the reference model: the same folder's kernels took 13.9 to 14.8 ms per decode
step from one session to the next), which long-lived workers would turn into a bias of the whole run.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from yamlllm_export.bench.types import Round, System, Workload
from yamlllm_export.errors import BuildError

# between two systems' turns: idle worker threads (ORT's pool, OpenMP's) spin a while before they sleep,
# and on a 2-core machine that spinning would be charged to the next system
SETTLE_S = 0.3


@dataclass(frozen=True)
class Measured:
    """A system's rounds after the warm-up, and its process's memory."""

    system: System
    rounds: tuple[Round, ...]
    baseline_rss: int  # after imports, before the model loads
    peak_rss: int
    device_bytes: int | None
    error: str = ""  # why it could not run (then rounds is empty)

    def median(self, field: str) -> float:
        return statistics.median(getattr(r, field) for r in self.rounds)


class Worker:
    def __init__(self, system: System, workload: Workload) -> None:
        self.system = system
        self.log = tempfile.TemporaryFile(mode="w+")  # stderr: read back only to explain a failure
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH")]))}
        self.proc = subprocess.Popen(  # noqa: S603 - our own module, run by the same interpreter
            [sys.executable, "-m", "yamlllm_export.bench.worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True, env=env,
        )  # fmt: skip
        self._send(json.dumps({"system": system.to_dict(), "workload": workload.to_dict()}))

    def _send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def ask(self, line: str | None = None) -> dict:
        """Send ``line`` (None: only read) and return the worker's answer; its error as ``RuntimeError``."""
        if line is not None:
            self._send(line)
        assert self.proc.stdout is not None
        answer = self.proc.stdout.readline()
        if not answer:
            self.log.seek(0)
            tail = [s for s in self.log.read().strip().splitlines() if s.strip()][-1:]
            raise RuntimeError(f"worker exited ({tail[0] if tail else 'no output'})")
        reply = json.loads(answer)
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return reply

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.log.close()


def measure(
    systems: list[System],
    workload: Workload,
    *,
    rounds: int = 5,
    warmup: int = 1,
    fresh: bool = False,
    progress: Callable[[str], None] | None = None,
) -> list[Measured]:
    """Run every system ``warmup + rounds`` times, alternated (with ``fresh``: ``rounds`` sessions of
    ``warmup + 1`` runs each); a system that fails to load or run is kept with its error (the others go on)."""
    if rounds < 1 or warmup < 0:
        raise BuildError(f"--rounds {rounds} / --warmup {warmup}: need at least one measured round and no negative warm-up")
    if fresh:
        return _measure_fresh(systems, workload, rounds, warmup, progress)
    workers: dict[str, Worker] = {}
    errors: dict[str, str] = {}
    baseline: dict[str, int] = {}
    results: dict[str, list[Round]] = {s.label: [] for s in systems}
    try:
        for system in systems:  # load one at a time: loading competes for the same cores and disk
            worker = Worker(system, workload)
            try:
                baseline[system.label] = worker.ask()["baseline_rss"]
                workers[system.label] = worker
            except RuntimeError as err:
                errors[system.label] = str(err)
                worker.close()
            if progress:
                progress(f"loaded {system.label}")
        labels = list(workers)
        for r in range(warmup + rounds):
            shift = r % len(labels) if labels else 0
            for label in labels[shift:] + labels[:shift]:
                if label in errors:
                    continue
                time.sleep(SETTLE_S)
                try:
                    measured = Round(**workers[label].ask("round"))
                except RuntimeError as err:
                    errors[label] = str(err)
                    continue
                if r >= warmup:
                    results[label].append(measured)
                if progress:
                    progress(f"round {r + 1}/{warmup + rounds} {label}" + (" (warm-up)" if r < warmup else ""))
        memory = {label: w.ask("exit") for label, w in workers.items() if label not in errors}
    finally:
        for worker in workers.values():
            worker.close()
    out = []
    for s in systems:
        mem = memory.get(s.label, {})
        out.append(
            Measured(
                system=s,
                rounds=tuple(results[s.label]) if s.label not in errors else (),
                baseline_rss=baseline.get(s.label, 0),
                peak_rss=mem.get("peak_rss", 0),
                device_bytes=mem.get("device_bytes"),
                error=errors.get(s.label, ""),
            )  # fmt: skip
        )
    return out


def _measure_fresh(
    systems: list[System], workload: Workload, rounds: int, warmup: int, progress: Callable[[str], None] | None
) -> list[Measured]:
    errors: dict[str, str] = {}
    results: dict[str, list[Round]] = {s.label: [] for s in systems}
    memory: dict[str, list[dict]] = {s.label: [] for s in systems}
    for r in range(rounds):
        shift = r % len(systems)
        for system in systems[shift:] + systems[:shift]:
            if system.label in errors:
                continue
            time.sleep(SETTLE_S)
            worker = Worker(system, workload)
            try:
                baseline = worker.ask()["baseline_rss"]
                for _ in range(warmup):
                    worker.ask("round")
                results[system.label].append(Round(**worker.ask("round")))
                memory[system.label].append({"baseline_rss": baseline, **worker.ask("exit")})
            except RuntimeError as err:
                errors[system.label] = str(err)
            finally:
                worker.close()
            if progress:
                progress(f"round {r + 1}/{rounds} {system.label} (new session)")

    def median(label: str, key: str) -> int | None:
        values = [m[key] for m in memory[label] if m.get(key) is not None]
        return int(statistics.median(values)) if values else None

    return [
        Measured(
            system=s,
            rounds=tuple(results[s.label]) if s.label not in errors else (),
            baseline_rss=median(s.label, "baseline_rss") or 0,
            peak_rss=median(s.label, "peak_rss") or 0,
            device_bytes=median(s.label, "device_bytes"),
            error=errors.get(s.label, ""),
        )
        for s in systems
    ]
