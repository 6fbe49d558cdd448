"""Install a plugin the way ``pip install`` does, into a folder put on the path: the
module, and a ``.dist-info`` whose ``entry_points.txt`` names its entry point."""

from __future__ import annotations

import os
from pathlib import Path

from market_data_services.app.catalog import PLUGIN_GROUP

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "spread_summary.py"


def install_distribution(folder: Path, *, module: str, source: str, group: str, entry: str) -> None:
    """Write ``module.py`` with ``source`` and a ``.dist-info`` whose ``entry_points.txt``
    holds the line ``entry`` (``name = module:attr``) in ``group``, as pip would."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{module}.py").write_text(source, encoding="utf-8")
    info = folder / f"{module}-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{group}]\n{entry}\n")


def install_plugin(folder: Path, *, module: str, source: str, entry: str) -> dict[str, str]:
    """Install the service plugin ``entry = module:ENTRY`` into ``folder``; returns the
    environment that makes Python find it."""
    install_distribution(
        folder, module=module, source=source, group=PLUGIN_GROUP, entry=f"{entry} = {module}:ENTRY"
    )
    path = os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path}
