from __future__ import annotations

import re
from pathlib import Path

from watcher.config import Settings


def settings_table(readme: str) -> set[str]:
    """The variables named in the rows of the settings table (docs/operations.md)."""
    section = readme.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `WATCHER_")]
    return {name for row in rows for name in re.findall(r"`(WATCHER_[A-Z0-9_]+)`", row)}


def test_every_setting_is_in_the_readme_settings_table(repo_root: Path) -> None:
    documented = settings_table((repo_root / "docs" / "operations.md").read_text())
    variables = {f"WATCHER_{name.upper()}" for name in Settings.model_fields}
    assert variables - documented == set()
