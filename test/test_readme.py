"""The README's example config is the recipe's default config, verbatim."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_readme_example_yaml_is_the_default_config():
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Example training config", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    config = (REPO / "egs2/smoe_asr_st/s2t1/conf/tuning/train_smoe_encdec_tiny.yaml").read_text()
    assert block == config


def test_readme_shows_the_ci_test_command():
    ci = (REPO / ".ci/run").read_text()
    assert "./tools/test.sh" in ci and "./tools/test.sh" in (REPO / "README.md").read_text()
