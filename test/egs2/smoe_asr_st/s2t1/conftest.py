"""Shared by the recipe's end-to-end tests: a scratch copy of the recipe.

The copy is made of links to the checkout, so run.sh writes data/, exp/ and
RESULTS.md into tmp; downloads come from one cache per machine (the Asterisk
.debs and the tts_ui sources are fetched once).
"""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[4]
RECIPE = REPO / "egs2/smoe_asr_st/s2t1"


def _scratch_recipe(root: Path) -> Path:
    recipe = root / "egs2/smoe_asr_st/s2t1"
    recipe.mkdir(parents=True)
    for name in ("run.sh", "path.sh", "cmd.sh", "db.sh", "conf", "local", "maint", "pretrained"):
        (recipe / name).symlink_to(RECIPE / name)
    for name in (".venv", "tools"):
        (root / name).symlink_to(REPO / name)
    cache = Path(os.environ.get("SMOE_TEST_DOWNLOADS", Path.home() / ".cache/espnet_smoe/asterisk_downloads"))
    cache.mkdir(parents=True, exist_ok=True)
    (recipe / "downloads").symlink_to(cache)
    return recipe


@pytest.fixture(scope="session")
def scratch_recipe():
    """Function root -> recipe folder of a fresh scratch copy."""
    return _scratch_recipe
