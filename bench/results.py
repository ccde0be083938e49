"""bench/results.json: one key per benchmark, each run replacing only its own key."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

PATH = Path(__file__).resolve().parent / "results.json"


def write_results(key: str, payload: dict[str, Any]) -> Path:
    data: dict[str, Any] = {}
    if PATH.exists():
        try:
            data = json.loads(PATH.read_text())
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {}
    data[key] = payload
    tmp = PATH.with_suffix(f".json.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tmp.replace(PATH)
    return PATH
