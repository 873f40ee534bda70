"""Counts of what the chaos suite did, printed at the end of the session."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Tally:
    """Fault scenarios run, runs made, invariant checks made and violations found."""

    scenarios: int = 0
    runs: int = 0
    checks: int = 0
    violations: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    bad_inputs: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)  # of the faulty runs
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def scenario(self, faults: list[str]) -> None:
        with self._lock:
            self.scenarios += 1
            self.faults.update(faults)

    def ran(self, runs: int = 1) -> None:
        with self._lock:
            self.runs += runs

    def checked(self, problems: list[str]) -> None:
        with self._lock:
            self.checks += 1
            self.violations += len(problems)

    def bad_input(self, outcome: str) -> None:
        with self._lock:
            self.bad_inputs[outcome] += 1

    def note_status(self, status: str) -> None:
        with self._lock:
            self.statuses[status] += 1

    def note(self, text: str) -> None:
        with self._lock:
            if text not in self.notes:
                self.notes.append(text)

    def summary(self) -> str:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items()))
        bad = ", ".join(f"{k} {v}" for k, v in sorted(self.bad_inputs.items()))
        statuses = ", ".join(f"{k} {v}" for k, v in sorted(self.statuses.items()))
        return (f"chaos: {self.scenarios} fault scenarios, {self.runs} runs, {self.checks} "
                f"invariant checks, {self.violations} violations; faulty runs ended: "
                f"{statuses or '-'}; faults: {kinds or '-'}; "
                f"bad inputs: {bad or '-'}"
                + "".join(f"\n  note: {n}" for n in self.notes))
