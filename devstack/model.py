"""What ``status`` reports, and the one-line-per-component format of status and progress."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

NAME_WIDTH = 12


def progress_line(name: str, text: str) -> str:
    """A progress line: the component's name in its column, then what happened."""
    return f"{name:<{NAME_WIDTH}} {text}"


@dataclass
class ComponentStatus:
    """One component of the stack. ``running``: its process is alive (for ``base-image``: the
    image exists); ``ready``: its endpoint answers."""

    name: str
    running: bool
    pid: int | None
    address: str
    ready: bool = False
    detail: str = ""


@dataclass
class StackStatus:
    home: Path
    components: list[ComponentStatus] = field(default_factory=list)

    @property
    def all_running(self) -> bool:
        return all(c.running and c.ready for c in self.components)

    @property
    def any_running(self) -> bool:
        return any(c.running for c in self.components if c.pid is not None)

    def __getitem__(self, name: str) -> ComponentStatus:
        for c in self.components:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def pids(self) -> dict[str, int | None]:
        return {c.name: c.pid for c in self.components}

    def __str__(self) -> str:
        lines = [f"RELAY_HOME={self.home}"]
        for c in self.components:
            state = "ready" if c.running and c.ready else "running" if c.running else "stopped"
            pid = f"pid {c.pid}" if c.pid else ""
            extra = f"  {c.detail}" if c.detail else ""
            lines.append(f"{c.name:<{NAME_WIDTH}} {state:<8} {pid:<10} {c.address}{extra}")
        return "\n".join(lines)
