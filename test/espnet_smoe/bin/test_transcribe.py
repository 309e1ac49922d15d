"""Long-form transcription and translation: ``python -m espnet_smoe.bin.transcribe`` and its modules.

The model (conftest ``recut_model``) has memorised seven AN4 utterances in both
bandwidths and both tasks, however their margins are cut: decoded one by one,
the prompts come back (almost) word for word. So in a two-minute recording made
of them, a lost segment, a cut inside a word or a wrong bandwidth shows as
errors against the prompts' own decoding.

That model knows single prompts only: a segment holding two of them is beyond
it (a real model trained on sentences reads several). So the long-form tests
set the longest segment to 3.5 s, which holds one prompt (at most 2.9 s) but
not two, and the recording's runs of prompts 0.1 s apart, which the VAD hears
as one stretch of speech, must be split at every gap between two prompts.
"""

import io
import json
import subprocess
import sys
from datetime import timedelta

import jiwer
import numpy as np
import pytest
import soundfile as sf
import srt
import torch
import webvtt

from espnet_smoe.audio_io import AudioInputError, read_audio, resample
from espnet_smoe.segmentation import Segment, SegmenterConfig, SpeechSegmenter, smoothed_energy_db
from espnet_smoe.subtitles import Cue, format_timestamp, to_srt, to_vtt
from espnet_smoe.transcribe import TranscribeConfig, Transcriber
from espnet_smoe.transcript_files import collect_inputs, write_transcript

FS = 16000
TASKS = ("asr", "st_fra")


MAX_SEGMENT = 3.5


@pytest.fixture(scope="module")
def transcriber(recut_model):
    config = TranscribeConfig(tasks=TASKS, segmenter=SegmenterConfig(max_segment_s=MAX_SEGMENT))
    return Transcriber.from_pretrained(recut_model["packed"], config=config, beam_size=3)


@pytest.fixture(scope="module")
def decoded(transcriber, long_recordings, recut_model):
    """Per bandwidth: the long-form transcript, and each prompt decoded alone from the same file."""
    out = {}
    for bw in ("wb", "nb"):
        path = long_recordings[bw]
        transcript = transcriber.transcribe(path)
        wave, info = read_audio(path)
        wave = resample(wave, info.sample_rate, FS)
        prompts = [Segment(int(p["start"] * FS), int(p["end"] * FS)) for p in long_recordings["placed"]]
        one_by_one = {task: transcriber.decode_segments(wave, prompts, task, bw) for task in TASKS}
        out[bw] = (transcript, one_by_one)
    return out


def references(long_recordings, recut_model, task):
    words = [p["words"] for p in long_recordings["placed"]]
    return words if task == "asr" else [recut_model["french"](w) for w in words]


@pytest.mark.parametrize("bw", ["wb", "nb"])
@pytest.mark.parametrize("task", TASKS)
def test_long_recording_decodes_as_well_as_its_prompts_one_by_one(decoded, long_recordings, recut_model, bw, task):
    transcript, one_by_one = decoded[bw]
    refs = " ".join(references(long_recordings, recut_model, task))
    wer_prompts = jiwer.wer(refs, " ".join(r.text for r in one_by_one[task]))
    wer_long = jiwer.wer(refs, " ".join(s.results[task].text for s in transcript.segments))
    print(f"{bw} {task}: WER one by one {wer_prompts:.3f}, long-form {wer_long:.3f}, "
          f"{len(transcript.segments)} segments for {len(long_recordings['placed'])} prompts")
    assert wer_prompts <= 0.05, "the model must get its prompts right, or lost segments cannot show"
    assert wer_long <= wer_prompts + 0.03, (wer_prompts, wer_long, transcript.text(task))


@pytest.mark.parametrize("bw", ["wb", "nb"])
def test_every_prompt_lies_inside_one_segment_of_at_most_the_model_window(decoded, long_recordings, bw):
    transcript, _ = decoded[bw]
    segments = transcript.segments
    assert transcript.duration == pytest.approx(long_recordings["placed"][-1]["end"] + 1.0, abs=0.01)
    assert all(s.end - s.start <= MAX_SEGMENT + 1e-6 for s in segments)
    assert all(a.start < b.start for a, b in zip(segments, segments[1:]))
    tol = 0.1
    for p in long_recordings["placed"]:
        holding = [s for s in segments if s.start <= p["speech_start"] + tol and s.end >= p["speech_end"] - tol]
        near = [(round(s.start, 2), round(s.end, 2)) for s in segments
                if s.end > p["speech_start"] and s.start < p["speech_end"]]
        assert holding, f"{p['words']!r} ({p['speech_start']:.2f}-{p['speech_end']:.2f} s) is cut: {near}"
    # the runs of prompts 0.1 s apart were heard as one stretch of speech longer than the model's 8 s
    # window and longer than two prompts: split between every two prompts (above), not inside one
    runs = {}
    for p in long_recordings["placed"]:
        if p["run"] is not None:
            runs.setdefault(p["run"], []).append(p)
    assert runs and all(run[-1]["speech_end"] - run[0]["speech_start"] > 8.0 for run in runs.values())
    starts = [p["speech_start"] for run in runs.values() for p in run[1:]]
    ends = [p["speech_end"] for run in runs.values() for p in run[:-1]]
    cuts = [s.start for s in segments]
    assert all(any(end <= c <= start for c in cuts) for end, start in zip(ends, starts)), (ends, starts, cuts)


def test_segments_default_to_the_model_window_and_may_not_exceed_it(transcriber):
    default = Transcriber(transcriber.s2t, TranscribeConfig(tasks=("asr",)))
    assert default.segmenter.config.max_segment_s == 8.0 == transcriber.s2t.preprocessor_conf["speech_length"]
    with pytest.raises(ValueError, match="max_segment_s=9.0 exceeds the model's speech_length 8.0 s"):
        Transcriber(transcriber.s2t, TranscribeConfig(segmenter=SegmenterConfig(max_segment_s=9.0)))


@pytest.mark.parametrize("bw, channels, rate", [("wb", 2, 44100), ("nb", 1, 8000)])
def test_bandwidth_is_detected_per_file_and_reported(decoded, bw, channels, rate):
    transcript, _ = decoded[bw]
    assert (transcript.info.channels, transcript.info.sample_rate) == (channels, rate)
    assert transcript.bandwidth.token == bw and transcript.bandwidth.source == "detected"
    summary = transcript.to_dict()
    assert summary["bandwidth"]["token"] == bw and summary["bandwidth"]["cutoff_hz"] > 0


def test_given_bandwidth_is_used_and_said(transcriber):
    given = Transcriber(transcriber.s2t, TranscribeConfig(tasks=("asr",), bandwidth="nb"), transcriber.segmenter)
    wide = torch.randn(FS) * 0.1
    choice = given.choose_bandwidth(wide, FS)
    assert (choice.token, choice.source) == ("nb", "given")


def test_a_long_recording_bandwidth_is_voted_by_excerpts_and_silence_does_not_vote(transcriber, recut_model):
    import torchaudio.functional as AF

    speech = torch.cat([wave for wave, _ in recut_model["clips"].values()] * 8)[: 100 * FS]
    narrow = AF.resample(AF.resample(speech, FS, 8000), 8000, FS)
    choice = transcriber.choose_bandwidth(torch.cat([torch.zeros(100 * FS), narrow]), FS)  # 200 s: 5 excerpts
    assert (choice.token, choice.source) == ("nb", "detected") and choice.cutoff_hz <= 5000
    choice = transcriber.choose_bandwidth(torch.zeros(200 * FS), FS)
    assert (choice.token, choice.source, choice.reason) == ("wb", "fallback", "silence")


def test_translation_decodes_without_ctc_and_transcription_with_it(transcriber):
    assert "ctc" in transcriber.searches["asr"].scorers and transcriber.searches["asr"].weights["ctc"] == 0.3
    assert "ctc" not in transcriber.searches["st_fra"].scorers
    assert transcriber.searches["st_fra"].weights["decoder"] == 1.0


def test_outputs_parse_and_agree_with_the_json(decoded, tmp_path):
    transcript, _ = decoded["nb"]
    written = write_transcript(transcript, tmp_path, "calls/call_nb")
    assert sorted(p.name for p in written) == sorted(
        ["call_nb.json"] + [f"call_nb.{t}.{f}" for t in TASKS for f in ("txt", "srt", "vtt")])
    data = json.loads((tmp_path / "calls/call_nb.json").read_text(encoding="utf-8"))
    assert data["status"] == "decoded" and data["tasks"] == list(TASKS) and data["bandwidth"]["token"] == "nb"
    assert data["audio"]["sample_rate"] == 8000 and data["audio"]["subtype"] == "ULAW"
    for task in TASKS:
        segments = [s for s in data["segments"] if s[task]["text"]]
        assert all(isinstance(s[task]["score"], float) and s[task]["tokens"] > 0 for s in segments)
        subs = list(srt.parse((tmp_path / f"calls/call_nb.{task}.srt").read_text(encoding="utf-8")))
        vtt = webvtt.from_buffer(io.StringIO((tmp_path / f"calls/call_nb.{task}.vtt").read_text(encoding="utf-8")))
        assert [s.index for s in subs] == list(range(1, len(segments) + 1))
        assert len(vtt.captions) == len(segments)
        for seg, sub, cap in zip(segments, subs, vtt.captions):
            assert sub.start == timedelta(milliseconds=round(seg["start"] * 1000))
            assert sub.end == timedelta(milliseconds=round(seg["end"] * 1000))
            assert (cap.start, cap.end) == (format_timestamp(seg["start"], "."), format_timestamp(seg["end"], "."))
            assert sub.content == cap.text == seg[task]["text"]
        text = (tmp_path / f"calls/call_nb.{task}.txt").read_text(encoding="utf-8")
        assert text.splitlines() == [s[task]["text"] for s in segments] == transcript.text(task).splitlines()


# --- the command line over a folder with bad files -----------------------------------------------------------------
@pytest.fixture
def mixed_folder(tmp_path, long_recordings):
    """One good MP3 (20 s of the long recording), and one file of each kind that must be skipped or reported."""
    folder = tmp_path / "inbox"
    (folder / "sub").mkdir(parents=True)
    wave, fs = sf.read(long_recordings["nb"], dtype="float32")
    sf.write(folder / "sub/good.mp3", wave[: 20 * fs], fs, format="MP3")
    sf.write(folder / "whole.wav", wave[: 3 * fs], fs, subtype="PCM_16")
    data = (folder / "whole.wav").read_bytes()
    (folder / "truncated.wav").write_bytes(data[: len(data) // 2])
    (folder / "whole.wav").unlink()
    sf.write(folder / "flac_cut.flac", wave[: 3 * fs], fs)
    data = (folder / "flac_cut.flac").read_bytes()
    (folder / "flac_cut.flac").write_bytes(data[: len(data) // 2])
    (folder / "noise.wav").write_bytes(b"RIFF but not really a wave file at all")
    sf.write(folder / "empty.wav", np.zeros(0, np.float32), 16000)
    sf.write(folder / "silence.wav", np.zeros(5 * 16000, np.float32), 16000, subtype="PCM_16")
    sf.write(folder / "low_rate.wav", wave[: 3 * 6000], 6000, subtype="PCM_16")
    (folder / "notes.txt").write_text("not audio, not a recording: ignored in a folder")
    return folder


def test_cli_skips_and_counts_bad_files_and_decodes_the_rest(recut_model, mixed_folder, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "espnet_smoe.bin.transcribe", "--model_tag", str(recut_model["packed"]),
         "--task", "asr", "st_fra", "--beam_size", "3", "--max_segment", str(MAX_SEGMENT), "--output_dir", str(out),
         str(mixed_folder)],
        capture_output=True, text=True,
    )
    assert proc.returncode == 1 and (out / "summary.json").is_file(), proc.stderr[-3000:]  # some files were skipped
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"] == {"decoded": 1, "no_speech": 1, "skipped": 5, "failed": 0}, summary
    kinds = {item["file"].rsplit("/", 1)[1]: item["kind"] for item in summary["skipped"]}
    assert kinds == {"truncated.wav": "truncated", "flac_cut.flac": "truncated", "noise.wav": "unreadable",
                     "empty.wav": "empty", "low_rate.wav": "low_sample_rate"}
    for item in summary["skipped"]:
        assert item["file"] in item["message"] and item["message"] in proc.stderr
    assert "6000 Hz" in proc.stderr and "silence.wav: no speech found" in proc.stderr
    # the good file, in the sub-folder it came from; the silent one, with empty outputs that say why
    good = json.loads((out / "sub/good.json").read_text(encoding="utf-8"))
    assert good["status"] == "decoded" and good["audio"]["format"] == "MP3" and good["bandwidth"]["token"] == "nb"
    assert (out / "sub/good.asr.txt").read_text(encoding="utf-8").strip()
    assert list(srt.parse((out / "sub/good.st_fra.srt").read_text(encoding="utf-8")))
    silent = json.loads((out / "silence.json").read_text(encoding="utf-8"))
    assert silent["status"] == "no_speech" and silent["segments"] == []
    assert silent["bandwidth"] == {"token": "wb", "source": "fallback", "cutoff_hz": None, "reason": "silence"}
    assert (out / "silence.asr.srt").read_text() == "" and (out / "silence.asr.vtt").read_text() == "WEBVTT\n"
    assert not list(out.glob("truncated*")) and not list(out.glob("notes*"))


def test_cli_decoding_flags_reach_the_beam_search(recut_model):
    """--beam_size, --penalty and --no_repeat_ngram_size build the search they name; without the last, no scorer."""
    from espnet_smoe.bin.transcribe import build_transcriber, get_parser
    from espnet_smoe.no_repeat_ngram import NoRepeatNgramScorer

    base = ["--model_tag", str(recut_model["packed"]), "--beam_size", "3", "--penalty", "0.5", "x.wav"]
    limited = build_transcriber(get_parser().parse_args(base + ["--no_repeat_ngram_size", "4"])).s2t
    scorer = limited.beam_search.full_scorers["no_repeat_ngram"]
    assert isinstance(scorer, NoRepeatNgramScorer) and scorer.ngram_size == 4
    assert limited.beam_search.beam_size == 3 and limited.beam_search.weights["length_bonus"] == 0.5
    free = build_transcriber(get_parser().parse_args(base)).s2t
    assert "no_repeat_ngram" not in free.beam_search.full_scorers, list(free.beam_search.full_scorers)


def test_cli_without_model_or_input_is_a_usage_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "espnet_smoe.bin.transcribe", str(tmp_path / "missing.wav"),
                           "--model_tag", str(tmp_path / "none.zip")], capture_output=True, text=True)
    assert proc.returncode == 2 and "missing.wav: no such file or folder" in proc.stderr


# --- the parts ------------------------------------------------------------------------------------------------------
def test_read_audio_any_container_rate_and_channels(tmp_path):
    import av

    t = np.arange(44100 * 2) / 44100
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.1 * np.sin(2 * np.pi * 440 * t)], axis=1)
    sf.write(tmp_path / "a.wav", stereo, 44100, subtype="PCM_24")
    sf.write(tmp_path / "a.ogg", stereo, 44100, format="OGG", subtype="VORBIS")
    sf.write(tmp_path / "a.mp3", stereo, 44100, format="MP3")
    with av.open(str(tmp_path / "a.m4a"), "w") as container:  # AAC in MP4: only FFmpeg reads it
        stream = container.add_stream("aac", rate=44100, layout="stereo")
        frame = av.AudioFrame.from_ndarray(stereo.T.astype(np.float32).copy(), format="fltp", layout="stereo")
        frame.sample_rate = 44100
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    for name, reader in [("a.wav", "soundfile"), ("a.ogg", "soundfile"), ("a.mp3", "soundfile"), ("a.m4a", "pyav")]:
        wave, info = read_audio(tmp_path / name)
        assert (info.sample_rate, info.channels, info.reader) == (44100, 2, reader), name
        assert info.duration == pytest.approx(2.0, abs=0.1) and wave.dim() == 1, name
        # the mean of the two channels: a 0.2 sine (lossy codecs ring at its onset, so its RMS, not its peak)
        assert float(wave.pow(2).mean().sqrt()) == pytest.approx(0.2 / np.sqrt(2), rel=0.1), name


def test_read_audio_refuses_what_cannot_be_used(tmp_path):
    sf.write(tmp_path / "low.wav", np.zeros(600, np.float32) + 0.1, 7999)
    with pytest.raises(AudioInputError, match="low.wav: sampled at 7999 Hz") as err:
        read_audio(tmp_path / "low.wav")
    assert err.value.kind == "low_sample_rate"
    with pytest.raises(FileNotFoundError, match="nothing.wav"):
        read_audio(tmp_path / "nothing.wav")


def test_segmenter_finds_nothing_in_silence_and_noise():
    segmenter = SpeechSegmenter(SegmenterConfig(max_segment_s=8.0))
    assert segmenter(torch.zeros(10 * FS), FS) == []
    assert segmenter(torch.randn(10 * FS) * 1e-4, FS) == []


def test_long_speech_is_cut_at_its_quietest_point_within_the_window():
    segmenter = SpeechSegmenter(SegmenterConfig(max_segment_s=4.0), vad_model=torch.nn.Identity())
    rng = np.random.default_rng(0)
    wave = (rng.standard_normal(10 * FS) * 0.1).astype(np.float32)
    for quiet in (1.0, 3.1, 6.5):  # 0.2 s dips; the one at 1.0 s lies before the search window
        wave[int(quiet * FS) : int((quiet + 0.2) * FS)] *= 0.001
    energy = smoothed_energy_db(wave, FS, 0.15, 160)
    pieces = segmenter.split_long(Segment(0, 10 * FS), energy, 160, 4 * FS)
    cuts = [p.end / FS for p in pieces[:-1]]
    assert len(cuts) == 2 and 3.1 <= cuts[0] <= 3.3 and 6.5 <= cuts[1] <= 6.7, cuts
    assert [p.start for p in pieces[1:]] == [p.end for p in pieces[:-1]] and pieces[-1].end == 10 * FS


def test_collect_inputs_refuses_two_files_with_one_output_name(tmp_path):
    for name in ("x.wav", "x.mp3"):
        sf.write(tmp_path / name, np.zeros(100, np.float32), 16000)
    with pytest.raises(ValueError, match="x.mp3 and .*x.wav would both write outputs named 'x'"):
        collect_inputs([tmp_path])
    with pytest.raises(FileNotFoundError, match="nope"):
        collect_inputs([tmp_path / "nope"])


def test_captions_format_times_and_keep_cues_whole():
    cues = [Cue(3723.4567, 3725.0, "one\n\ntwo --> three"), Cue(4000.0, 4001.0, "  "), Cue(0.0, 0.5, "go")]
    text = to_srt(cues)
    assert text.startswith("1\n01:02:03,457 --> 01:02:05,000\none\ntwo -> three\n\n2\n00:00:00,000 --> ")
    parsed = list(srt.parse(text))
    assert [s.content for s in parsed] == ["one\ntwo -> three", "go"]  # the empty cue is left out
    vtt = webvtt.from_buffer(io.StringIO(to_vtt(cues)))
    assert [(c.start, c.text) for c in vtt.captions] == [("01:02:03.457", "one\ntwo -> three"), ("00:00:00.000", "go")]
    assert format_timestamp(360000.0, ",") == "100:00:00,000"
    with pytest.raises(ValueError, match="ends before it starts"):
        to_srt([Cue(2.0, 1.0, "x")])
