"""The directory a process group's metric files go to (prometheus_client's multiprocess mode).

Apart from common/metrics.py because it must run before anything imports prometheus_client: the
library reads PROMETHEUS_MULTIPROC_DIR once, at import.
"""

import os
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare(path: Path) -> str:
    """An empty directory for a process group's metric files: what a previous run left is removed
    (its counts belonged to processes that are gone)."""
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)
    return str(path)


def var_dir() -> Path:
    """VAR_DIR as settings.py reads it, for code that runs before the settings are loaded."""
    return Path(os.environ.get("VAR_DIR") or Path(__file__).resolve().parent.parent / "var").resolve()
