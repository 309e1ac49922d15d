"""run.sh end to end on a slice of the real corpus: every stage, tiny model.

The recipe runs in a scratch copy made of links to the checkout (so data,
exp and downloads land in tmp), from the Asterisk download to packed.zip.
"""

import json
import shutil
import subprocess

import pytest

from local.score import normalize_for_wer

S2T_ARGS = "--max_epoch 2 --num_iters_per_epoch 8"
# run.sh's default tag: the config's name, then --s2t_args as ESPnet's s2t.sh writes them, then
# _from_base (the default run fine-tunes the shipped base model)
EXP = "exp/train_smoe_encdec_tiny_max_epoch2_num_iters_per_epoch8_from_base"
# its decoding folder: conf/decode_asterisk.yaml (the default for --corpus asterisk), then --inference_args
DECODE = "decode_decode_asterisk_beam_size2"
LISTENING_CER = 92.0  # %: the base fine-tuned 16 steps scores 75 / 87.5 on the slice's three prompts
INIT_ARGS = "--init_param exp/pretrained/base_smoe_encdec_tiny/model.pth"

@pytest.fixture(scope="module")
def recipe_run(tmp_path_factory, scratch_recipe):
    root = tmp_path_factory.mktemp("recipe")
    recipe = scratch_recipe(root)
    log = root / "run.log"
    with open(log, "w") as f:
        proc = subprocess.run(
            # no tts_ui slice here (its TTS build is minutes); train_mix is then Asterisk's train
            ["./run.sh", "--max_prompts", "24", "--tts_ui_sizes", "0 0 0", "--nj", "2", "--inference_nj", "2",
             "--s2t_args", S2T_ARGS, "--inference_args", "--beam_size 2"],
            cwd=recipe, stdout=f, stderr=subprocess.STDOUT,
        )
    text = log.read_text()
    assert proc.returncode == 0, text[-5000:]
    return recipe, text


def test_every_stage_ran(recipe_run):
    _, text = recipe_run
    # stages 1-5 and 10-14 (s2t.sh's numbers) announce themselves in order, each with its own work;
    # the tts_ui part of stage 4 says why it made nothing
    stages = [*range(1, 6), *range(10, 15)]
    starts = [text.index(f"Stage {stage}:") for stage in stages]
    assert starts == sorted(starts) and not any(f"Stage {n}:" in text for n in (6, 7, 8, 9, 15))
    for header in ("Stage 3: filter and split", "Stage 4: no tts_ui corpus (--tts_ui_sizes 0 0 0)",
                   "Stage 4: data/train_mix", "Stage 5: base model pretrained/base_smoe_encdec_tiny.zip",
                   "Stage 10: feature statistics",
                   f"Stage 11: train {EXP} (", "Stage 12: decode", "Stage 13: score", "Stage 14: pack"):
        assert header in text, header


def read_kaldi(path):
    return dict((line.split(" ", 1) + [""])[:2] for line in path.read_text(encoding="utf-8").splitlines())


def test_results_hold_every_test_utterance_for_both_tasks(recipe_run):
    recipe, _ = recipe_run
    exp = recipe / EXP
    results = json.loads((exp / "results.json").read_text())["results"]
    got = {(r["task"], r["bandwidth"]): r for r in results}
    assert set(got) == {("asr", "nb"), ("asr", "wb"), ("st_fra", "nb"), ("st_fra", "wb")}
    decode = exp / f"{DECODE}_valid.acc.ave"  # --inference_args in its name, as in s2t.sh
    summary = json.loads((recipe / "data/local/split_summary.json").read_text())
    # one set of jobs decoded both test sets: their keys (as <set>/<key>) split between the jobs, none twice
    job_keys = [list(read_kaldi(path)) for path in sorted(decode.glob("jobs/keys.*.scp"))]
    assert len(job_keys) == 2 and abs(len(job_keys[0]) - len(job_keys[1])) <= 1
    assert sorted(sum(job_keys, [])) == sorted({f"test_{bw}/{k}" for bw in ("nb", "wb")
                                                for k in read_kaldi(recipe / f"data/test_{bw}/wav.scp")})
    for bw in ("nb", "wb"):
        keys = set(read_kaldi(recipe / f"data/test_{bw}/wav.scp"))
        # every test prompt of the split is decoded and scored, in both tasks
        assert len(keys) == summary["test"]["utts_per_set"] == summary["test"]["prompts"]
        assert got[("asr", bw)]["num_utts"] == got[("st_fra", bw)]["num_utts"] == len(keys)
        for task in ("asr", "st_fra"):
            # one process decoded both tasks; each task's merged output holds every key
            hyps = read_kaldi(decode / f"test_{bw}_{task}/1best_recog/text_nospecial")
            assert set(hyps) == keys, (task, bw, sorted(set(hyps) ^ keys)[:5])
            assert (decode / f"jobs/output.1/{task}/1best_recog/token").is_file()
        # the WER is the one of these references and hypotheses: counts recomputed here
        asr = got[("asr", bw)]
        refs = read_kaldi(recipe / f"data/test_{bw}/text.asr")
        hyps = read_kaldi(decode / f"test_{bw}_asr/1best_recog/text_nospecial")
        assert asr["num_words"] == sum(len(normalize_for_wer(refs[k]).split()) for k in keys)
        assert asr["corr"] + asr["sub"] + asr["ins"] == sum(len(normalize_for_wer(hyps[k]).split()) for k in keys)
        assert asr["wer"] == pytest.approx(100.0 * (asr["sub"] + asr["del"] + asr["ins"]) / asr["num_words"])
        for metric in ("bleu", "chrf"):
            assert isinstance(got[("st_fra", bw)][metric], float), metric
    md = (exp / "RESULTS.md").read_text()
    assert "WER" in md and "BLEU" in md
    # stage 13 scored into the decoding folder and copied the scores to the experiment
    assert (decode / "RESULTS.md").read_text() == md
    assert json.loads((decode / "results.json").read_text())["results"] == results


def test_the_first_run_listens(recipe_run):
    """The default run fine-tunes the shipped base model: 16 steps later it hears the slice's real test prompts
    (16 steps from random weights write "s" or nothing: CER 94-100 % here, no word right)."""
    recipe, _ = recipe_run
    results = json.loads((recipe / EXP / "results.json").read_text())["results"]
    cer = {r["bandwidth"]: r["cer"] for r in results if r["task"] == "asr"}
    assert set(cer) == {"nb", "wb"} and max(cer.values()) < LISTENING_CER, cer
    decode = recipe / EXP / f"{DECODE}_valid.acc.ave"
    for bw in ("nb", "wb"):
        # the slice's prompts are "Location.", "IAX" and "N B S": the spelled ones are hard, the word is heard
        refs = read_kaldi(recipe / f"data/test_{bw}/text.asr")
        hyps = read_kaldi(decode / f"test_{bw}_asr/1best_recog/text_nospecial")
        heard = [w for k in refs for w in normalize_for_wer(refs[k]).split()
                 if len(w) >= 4 and w in normalize_for_wer(hyps[k]).split()]
        assert heard, (bw, refs, hyps)
    # the base's vocabulary and normalisation, unpacked once, are what the run trained and packed with
    base = recipe / "exp/pretrained/base_smoe_encdec_tiny"
    config = (recipe / EXP / "config.yaml").read_text()
    assert f"bpemodel: {base.relative_to(recipe)}/bpe.model" in config
    assert f"stats_file: {base.relative_to(recipe)}/feats_stats.npz" in config


def test_model_info_and_package(recipe_run):
    recipe, _ = recipe_run
    exp = recipe / EXP
    info = json.loads((exp / "model_info.json").read_text())
    assert info["total_params"] > info["active_params"] > 0
    assert info["encoder"] == "smoe_conformer"
    assert (exp / "packed.zip").stat().st_size > 10_000


def test_data_prep_logged_its_skips(recipe_run):
    recipe, _ = recipe_run
    skipped = (recipe / "data/local/skipped.tsv").read_text().splitlines()
    assert len(skipped) > 1  # header + the slice's skipped prompts, each with a reason
    # the training set is Asterisk's train, checked against every dev/test sentence
    train = read_kaldi(recipe / "data/train/wav.scp")
    mix = read_kaldi(recipe / "data/train_mix/wav.scp")
    dropped = (recipe / "data/train_mix/skipped.tsv").read_text().splitlines()[1:]
    assert set(mix) | {line.split("\t")[1] for line in dropped} == set(train)


def test_test_sets_may_share_keys(recipe_run):
    """tts_ui's NB and WB tests read the same sentences under the same keys: stage 12 decodes both."""
    recipe, _ = recipe_run
    shutil.copytree(recipe / "data/test_nb", recipe / "data/test_nb_again")
    keys = set(read_kaldi(recipe / "data/test_nb/wav.scp"))
    proc = subprocess.run(  # another checkpoint name, so the fixture's decoding stays as it was
        ["./run.sh", "--stage", "12", "--stop_stage", "12", "--max_prompts", "24", "--tts_ui_sizes", "0 0 0",
         "--inference_nj", "2", "--test_sets", "test_nb test_nb_again", "--inference_s2t_model", "valid.acc.best.pth",
         "--s2t_args", S2T_ARGS, "--inference_args", "--beam_size 2"], cwd=recipe, capture_output=True, text=True)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    decode = recipe / EXP / f"{DECODE}_valid.acc.best"
    for test_set in ("test_nb", "test_nb_again"):
        for task in ("asr", "st_fra"):
            hyps = read_kaldi(decode / f"{test_set}_{task}/1best_recog/text")
            assert set(hyps) == keys, (test_set, task, sorted(set(hyps) ^ keys)[:5])


def test_other_s2t_args_do_not_resume_the_trained_folder(recipe_run):
    """The trained folder under its own name with other training arguments: run.sh stops before ESPnet
    starts, naming the difference, and the checkpoint stays as it was."""
    recipe, _ = recipe_run
    checkpoint = recipe / EXP / "checkpoint.pth"
    before = checkpoint.stat().st_mtime_ns
    proc = subprocess.run(
        ["./run.sh", "--stage", "11", "--stop_stage", "11", "--max_prompts", "24", "--tts_ui_sizes", "0 0 0",
         "--tag", EXP.split("/")[1], "--s2t_args", "--max_epoch 3 --num_iters_per_epoch 8"],
        cwd=recipe, capture_output=True, text=True)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"exp_guard: {EXP} was trained with other options" in proc.stderr
    assert (f"--s2t_args: '{INIT_ARGS} {S2T_ARGS}' there, '{INIT_ARGS} --max_epoch 3 --num_iters_per_epoch 8' here"
            in proc.stderr)
    assert checkpoint.stat().st_mtime_ns == before
