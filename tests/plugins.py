"""Install a service plugin the way ``pip install`` does, into a folder put on PYTHONPATH:
the module, and a ``.dist-info`` whose ``entry_points.txt`` names its ``ServiceEntry``."""

from __future__ import annotations

import os
from pathlib import Path

from market_data_services.app.catalog import PLUGIN_GROUP

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "spread_summary.py"


def install_plugin(folder: Path, *, module: str, source: str, entry: str) -> dict[str, str]:
    """Write ``module.py`` with ``source`` and the entry point ``entry = module:ENTRY``
    into ``folder``; returns the environment that makes Python find it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{module}.py").write_text(source)
    info = folder / f"{module}-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{PLUGIN_GROUP}]\n{entry} = {module}:ENTRY\n")
    path = os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path}
