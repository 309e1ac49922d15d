"""The plugin's install stays lean: the recipe's own dependencies are the "recipe" extra."""

import subprocess
import sys

# Recipe-only packages (setup.py's recipe extra) that ESPnet itself does not import.
RECIPE_ONLY = ("G722", "polib", "pyroomacoustics", "sacrebleu", "jiwer", "matplotlib")


def test_plugin_imports_no_recipe_dependency():
    # a fresh interpreter: this test process has the recipe's modules loaded already
    code = (
        "import sys, espnet_smoe, espnet_smoe.task, espnet_smoe.inference, espnet_smoe.bin.model_info\n"
        f"print(' '.join(m for m in {RECIPE_ONLY!r} if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "", f"the plugin imports recipe-only packages: {proc.stdout.strip()}"
