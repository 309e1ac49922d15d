"""The README shows what the repository has: its config excerpt, options, modules and test command."""

import importlib.util
import re
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "egs2/smoe_asr_st/s2t1"
README = (REPO / "README.md").read_text(encoding="utf-8")


def code_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, re.S)


def script_options(script: Path) -> set[str]:
    """The options a recipe script takes: its `name=value` settings before parse_options.sh."""
    head = script.read_text(encoding="utf-8").split("parse_options.sh", 1)[0]
    return {m.group(1) for m in re.finditer(r"^([a-z_][a-z0-9_]*)=", head, re.M)}


def command_lines() -> list[str]:
    """The README's shell commands, continuation lines joined, comments dropped."""
    lines = []
    for block in code_blocks("bash"):
        joined = re.sub(r"\\\n\s*", " ", block)
        lines += [line.split("  #", 1)[0].strip() for line in joined.splitlines() if line.strip()]
    return lines


def is_subsequence(needle: list[str], haystack: list[str]) -> bool:
    rest = iter(haystack)
    return all(any(line == candidate for candidate in rest) for line in needle)


def test_readme_config_excerpt_is_the_default_config_in_order():
    section = README.split("### Configuration", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    excerpt = [line for line in block.splitlines() if line.strip()]
    config = (RECIPE / "conf/tuning/train_smoe_encdec_tiny.yaml").read_text(encoding="utf-8").splitlines()
    assert len(excerpt) >= 20, "the excerpt should show the model, encoder, decoder and preprocessor"
    missing = [line for line in excerpt if line not in config]
    assert not missing, f"README yaml lines not in the default config: {missing}"
    assert is_subsequence(excerpt, config), "README yaml lines are in another order than in the config"


def test_is_subsequence_sees_order_and_absence():
    assert is_subsequence(["a", "c"], ["a", "b", "c"])
    assert not is_subsequence(["c", "a"], ["a", "b", "c"])
    assert not is_subsequence(["d"], ["a", "b", "c"])


@pytest.mark.parametrize("script", ["./run.sh", "local/run_table.sh"])
def test_readme_recipe_commands_use_options_the_scripts_take(script):
    known = script_options(RECIPE / script.lstrip("./"))
    used = []
    for line in command_lines():
        words = shlex.split(line.replace("${opts[@]}", ""))
        for i, word in enumerate(words):
            if word.endswith(script) or (script == "./run.sh" and word.endswith("/run.sh")):
                # a quoted value with spaces ("--max_epoch 5" for --s2t_args) is not an option of the script
                used += [w[2:].split("=", 1)[0] for w in words[i + 1:] if w.startswith("--") and " " not in w]
    assert used, f"the README shows no {script} command with options"
    unknown = sorted(set(used) - known)
    assert not unknown, f"README passes {script} options it does not take: {unknown}"


def test_readme_python_modules_exist():
    modules = set(re.findall(r"python3? -m ((?:espnet_smoe|espnet2)(?:\.\w+)+)", README))
    assert {"espnet_smoe.bin.s2t_train", "espnet_smoe.bin.s2t_inference"} <= modules
    missing = sorted(m for m in modules if importlib.util.find_spec(m) is None)
    assert not missing, f"README runs modules that do not exist: {missing}"


def test_readme_shows_the_ci_test_command():
    ci = (REPO / ".ci/run").read_text()
    assert "./tools/test.sh" in ci and "./tools/test.sh" in README
