"""Transcription and translation of whole recordings, of any length.

:class:`SMoESpeech2Text` decodes one utterance of at most the model's
``speech_length`` (8 s for the recipe's models): that is what it was trained
on, and it trims longer input. A recording of minutes goes through four steps:

1. read it in any format, rate and channel count and mix it down
   (:mod:`espnet_smoe.audio_io`);
2. decide its bandwidth token once for the whole file, from the audio at its
   own rate (:mod:`espnet_smoe.bandwidth`) or as given, since one file is one
   channel: a call does not switch between telephone and wideband;
3. resample to the model's rate and cut it into speech segments
   (:mod:`espnet_smoe.segmentation`);
4. decode the segments in batches, longest first so that a batch holds
   segments of similar length, once per task; joint CTC/attention for the
   tasks whose target is the CTC branch's (the transcript), attention alone
   for the others (CTC would pull a translation towards the English words).

Example::

    from espnet_smoe.transcribe import TranscribeConfig, Transcriber
    transcriber = Transcriber.from_pretrained(
        "exp/train_smoe_encdec_tiny_from_base/packed.zip",
        config=TranscribeConfig(tasks=("asr", "st_fra")),
    )
    transcript = transcriber.transcribe("call.wav")
    for segment in transcript.segments:
        print(segment.start, segment.end, segment.results["st_fra"].text)
"""

import dataclasses
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Protocol, Sequence, Tuple, Union

import torch
from espnet2.legacy.nets.beam_search import BeamSearch
from typeguard import typechecked

from espnet_smoe.audio_io import AudioInfo, read_audio, resample
from espnet_smoe.bandwidth import NARROWBAND, WIDEBAND, detect_bandwidth
from espnet_smoe.inference import AUTO, SMoESpeech2Text
from espnet_smoe.segmentation import Segment, SegmenterConfig, SpeechSegmenter
from espnet_smoe.subtitles import Cue

# how a long recording's bandwidth is judged: see Transcriber.choose_bandwidth
BANDWIDTH_EXCERPT_S = 30.0
BANDWIDTH_EXCERPTS = 5



class Progress(Protocol):
    """Where a transcription reports its progress (a ``tqdm`` bar is one)."""

    def reset(self, total: Optional[float] = None) -> None:
        """Start over, with ``total`` segment decodes (segments x tasks) to do."""

    def update(self, n: float = 1) -> Optional[bool]:
        """``n`` more segment decodes are done."""


@dataclass(frozen=True)
class TranscribeConfig:
    """What to produce and how to segment.

    Attributes:
        tasks: Task tokens to decode every segment with (``asr``,
            ``st_fra``); angle brackets optional.
        bandwidth: ``auto`` (detect per file), ``nb`` or ``wb``.
        bandwidth_fallback: With ``auto``: the token for a file whose
            bandwidth cannot be measured (silence, clipping).
        lang: Source-language token.
        ctc_tasks: Tasks decoded with the CTC branch (its target is the
            transcript); the others decode with ``ctc_weight`` 0.
        batch_size: Segments per beam search.
        segmenter: Segmentation settings; its ``max_segment_s`` may not
            exceed the model's ``speech_length`` (None: the model's).
    """

    tasks: Tuple[str, ...] = ("asr",)
    bandwidth: str = AUTO
    bandwidth_fallback: str = WIDEBAND
    lang: str = "eng"
    ctc_tasks: Tuple[str, ...] = ("asr",)
    batch_size: int = 8
    segmenter: Optional[SegmenterConfig] = None

    def __post_init__(self):
        tasks = tuple(t.strip("<>") for t in self.tasks)
        if not tasks or len(set(tasks)) != len(tasks):
            raise ValueError(f"tasks must name each task once, got {list(self.tasks)}")
        object.__setattr__(self, "tasks", tasks)
        object.__setattr__(self, "ctc_tasks", tuple(t.strip("<>") for t in self.ctc_tasks))
        object.__setattr__(self, "bandwidth", self.bandwidth.strip("<>"))
        object.__setattr__(self, "lang", self.lang.strip("<>"))
        if self.bandwidth not in (AUTO, NARROWBAND, WIDEBAND):
            raise ValueError(f"bandwidth must be {AUTO}, {NARROWBAND} or {WIDEBAND}, got {self.bandwidth!r}")
        if self.bandwidth_fallback not in (NARROWBAND, WIDEBAND):
            raise ValueError(f"bandwidth_fallback must be {NARROWBAND} or {WIDEBAND}, got {self.bandwidth_fallback!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")


@dataclass(frozen=True)
class BandwidthChoice:
    """The bandwidth token a file was decoded with, and where it came from.

    Attributes:
        token: ``nb`` or ``wb``.
        source: ``detected``, ``fallback`` (detection could not decide) or
            ``given``.
        cutoff_hz: The measured cutoff, when detected.
        reason: Why detection could not decide (``silence``, ``clipped``).
    """

    token: str
    source: str
    cutoff_hz: Optional[float] = None
    reason: Optional[str] = None


@dataclass(frozen=True)
class TaskResult:
    """One task's best hypothesis for one segment.

    Attributes:
        text: Text without special tokens.
        score: The beam search's total score of the hypothesis (weighted
            log-probabilities, higher is better).
        tokens: Number of output tokens, special tokens excluded.
    """

    text: str
    score: float
    tokens: int


@dataclass(frozen=True)
class SegmentResult:
    """A decoded segment.

    Attributes:
        start: Seconds from the start of the recording.
        end: Seconds.
        results: Task -> its result.
    """

    start: float
    end: float
    results: Dict[str, TaskResult]


@dataclass
class Transcript:
    """Everything decoded from one recording.

    Attributes:
        source: The file, or a name for an in-memory waveform.
        info: What the file held (rate, channels, format).
        bandwidth: The bandwidth token used.
        tasks: The tasks decoded.
        lang: The source-language token.
        segments: In time order; empty when no speech was found.
        seconds: Wall-clock seconds the decoding took, reading included.
    """

    source: str
    info: AudioInfo
    bandwidth: BandwidthChoice
    tasks: Tuple[str, ...]
    lang: str
    segments: List[SegmentResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def status(self) -> str:
        """``decoded``, or ``no_speech`` when the VAD found no speech."""
        return "decoded" if self.segments else "no_speech"

    @property
    def duration(self) -> float:
        """Seconds of audio."""
        return self.info.duration

    def text(self, task: str) -> str:
        """The task's text, one segment per line (segments with no text left out)."""
        return "\n".join(t for t in (s.results[task].text for s in self.segments) if t)

    def cues(self, task: str) -> List[Cue]:
        """The task's segments as caption cues."""
        return [Cue(s.start, s.end, s.results[task].text) for s in self.segments]

    def to_dict(self) -> dict:
        """JSON-ready form: source, audio, bandwidth, tasks, segments with times and scores."""
        return {
            "source": self.source,
            "status": self.status,
            "duration": round(self.duration, 3),
            "audio": dataclasses.asdict(self.info),
            "bandwidth": dataclasses.asdict(self.bandwidth),
            "lang": self.lang,
            "tasks": list(self.tasks),
            "text": {task: self.text(task) for task in self.tasks},
            "segments": [
                {"start": round(s.start, 3), "end": round(s.end, 3),
                 **{task: dataclasses.asdict(r) for task, r in s.results.items()}}
                for s in self.segments
            ],
            "decode_seconds": round(self.seconds, 3),
        }


def beam_search_with_ctc_weight(search: BeamSearch, ctc_weight: float) -> BeamSearch:
    """The same search over the same scorers, with another CTC weight.

    ESPnet fixes the weights when it builds the search and drops scorers of
    weight 0, so one :class:`SMoESpeech2Text` built with the CTC weight of the
    CTC tasks serves the others through a copy of its search.

    Args:
        search: A search built with the CTC scorer (``ctc_weight`` > 0), or
            without one when ``ctc_weight`` is 0.
        ctc_weight: The new weight; the decoder gets ``1 - ctc_weight``.
    """
    if search.weights.get("ctc", 0.0) == ctc_weight:
        return search
    if ctc_weight > 0.0 and "ctc" not in search.scorers:
        raise ValueError("the search was built without CTC (ctc_weight 0): it cannot be given a CTC weight")
    scorers = {k: v for k, v in search.scorers.items() if ctc_weight > 0.0 or k != "ctc"}
    weights = {**search.weights, "decoder": 1.0 - ctc_weight, "ctc": ctc_weight}
    copy = type(search)(
        scorers=scorers,
        weights=weights,
        beam_size=search.beam_size,
        vocab_size=search.n_vocab,
        sos=search.sos,
        eos=search.eos,
        token_list=search.token_list,
        pre_beam_ratio=search.pre_beam_size / search.beam_size,
        pre_beam_score_key=None if ctc_weight == 1.0 else "full",
        return_hs=search.return_hs,
        normalize_length=search.normalize_length,
    )
    return copy.eval()


class Transcriber:
    """Long-form transcription and translation with an S-MoE model.

    Args:
        speech2text: The model and its beam search (any ``batch_size``: the
            segments are decoded ``config.batch_size`` at a time).
        config: Tasks, bandwidth and segmentation.
        segmenter: Built from ``config.segmenter`` when None.
    """

    @typechecked
    def __init__(
        self,
        speech2text: SMoESpeech2Text,
        config: TranscribeConfig = TranscribeConfig(),
        segmenter: Optional[SpeechSegmenter] = None,
    ):
        self.s2t = speech2text
        self.config = config
        conf = speech2text.preprocessor_conf
        self.sample_rate = int(conf.get("fs", 16000))
        model_window = float(conf.get("speech_length", 30))
        seg_config = config.segmenter or SegmenterConfig()
        if seg_config.max_segment_s is None:
            seg_config = dataclasses.replace(seg_config, max_segment_s=model_window)
        if seg_config.max_segment_s > model_window:
            raise ValueError(f"max_segment_s={seg_config.max_segment_s} exceeds the model's speech_length "
                             f"{model_window} s: longer segments would be trimmed")
        self.segmenter = segmenter or SpeechSegmenter(seg_config)
        token2id = speech2text.converter.token2id
        for task in config.tasks:
            if f"<{task}>" not in token2id:
                known = sorted(t for t in token2id if t.startswith(("<asr", "<st_", "<s2t")))
                raise ValueError(f"task <{task}> is not in the model's token list (its tasks: {known})")
        if f"<{config.lang}>" not in token2id:
            raise ValueError(f"language <{config.lang}> is not in the model's token list")
        ctc_weight = speech2text.beam_search.weights.get("ctc", 0.0)
        self.searches = {
            task: beam_search_with_ctc_weight(speech2text.beam_search, ctc_weight if task in config.ctc_tasks else 0.0)
            for task in config.tasks
        }

    @classmethod
    def from_pretrained(
        cls,
        model_tag: Union[str, Path, None] = None,
        s2t_train_config: Union[str, Path, None] = None,
        s2t_model_file: Union[str, Path, None] = None,
        config: TranscribeConfig = TranscribeConfig(),
        device: str = "cpu",
        beam_size: int = 5,
        ctc_weight: float = 0.3,
        maxlenratio: float = 0.0,
        **kwargs,
    ) -> "Transcriber":
        """Build from a packed zip (``model_tag``) or a config and a checkpoint.

        Args:
            model_tag: Zip made by ``espnet2.bin.pack s2t``.
            s2t_train_config: Training config.yaml (instead of ``model_tag``).
            s2t_model_file: Model .pth (instead of ``model_tag``).
            config: Tasks, bandwidth and segmentation.
            device: ``cpu`` or ``cuda[:N]``.
            beam_size: Beam size.
            ctc_weight: CTC weight of the tasks in ``config.ctc_tasks``.
            maxlenratio: ESPnet's output length limit (0: one token per
                encoder frame).
            **kwargs: Other ``Speech2Text`` arguments (``penalty``, ``dtype``).
        """
        if (model_tag is None) == (s2t_train_config is None):
            raise ValueError("give either model_tag (a packed zip) or s2t_train_config and s2t_model_file")
        options = dict(device=device, beam_size=beam_size, ctc_weight=ctc_weight, maxlenratio=maxlenratio,
                       batch_size=config.batch_size, lang_sym=f"<{config.lang}>", **kwargs)
        if model_tag is not None:
            if not Path(model_tag).is_file():
                raise FileNotFoundError(f"{model_tag}: no such packed model (a zip written by espnet2.bin.pack)")
            s2t = SMoESpeech2Text.from_pretrained(str(model_tag), **options)
        else:
            s2t = SMoESpeech2Text(s2t_train_config, s2t_model_file, **options)
        return cls(s2t, config)

    def transcribe(self, path: Union[str, Path], progress: Optional[Progress] = None) -> Transcript:
        """Read, segment and decode one file.

        Args:
            path: The recording.
            progress: Told the number of segment decodes (segments x tasks) once
                the file is segmented, then each batch as it is decoded.

        Raises:
            AudioInputError: The file cannot be used (see :func:`read_audio`).
        """
        start = time.perf_counter()
        wave, info = read_audio(path)
        transcript = self._transcribe(wave, info, str(path), progress)
        transcript.seconds = time.perf_counter() - start
        return transcript

    def transcribe_waveform(
        self, wave: torch.Tensor, sample_rate: int, name: str = "<waveform>",
        progress: Optional[Progress] = None,
    ) -> Transcript:
        """Segment and decode an in-memory recording.

        Args:
            wave: (Samples,) or (Samples, Channels) waveform; channels are averaged.
            sample_rate: Its rate.
            name: What the transcript calls it.
            progress: As in :meth:`transcribe`.
        """
        start = time.perf_counter()
        wave = torch.as_tensor(wave, dtype=torch.float32)
        channels = 1 if wave.dim() == 1 else wave.size(1)
        mono = wave if wave.dim() == 1 else wave.mean(dim=1)
        info = AudioInfo(sample_rate, channels, len(mono), "array", str(wave.dtype), "memory")
        transcript = self._transcribe(mono, info, name, progress)
        transcript.seconds = time.perf_counter() - start
        return transcript

    def choose_bandwidth(self, wave: torch.Tensor, sample_rate: int) -> BandwidthChoice:
        """The bandwidth token for a (Samples,) recording at its own rate.

        A long recording is judged on :data:`BANDWIDTH_EXCERPTS` stretches of
        :data:`BANDWIDTH_EXCERPT_S` spread over it, by majority: the detector's
        spectrum of a whole hour would take gigabytes, and one channel does not
        change its bandwidth. Excerpts of silence or clipping do not vote.
        """
        if self.config.bandwidth != AUTO:
            return BandwidthChoice(self.config.bandwidth, "given")
        size = int(BANDWIDTH_EXCERPT_S * sample_rate)
        starts = [0] if len(wave) <= size * BANDWIDTH_EXCERPTS else \
            torch.linspace(0, len(wave) - size, BANDWIDTH_EXCERPTS).long().tolist()
        decisions = [detect_bandwidth(wave[s : s + size] if len(starts) > 1 else wave, sample_rate,
                                      fallback=self.config.bandwidth_fallback) for s in starts]
        measured = [d for d in decisions if d.reason is None]
        if not measured:
            return BandwidthChoice(self.config.bandwidth_fallback, "fallback", None, decisions[0].reason)
        votes = Counter(d.token for d in measured).most_common()
        # a tie goes to the fallback token's side when it is one of them
        token = votes[0][0] if len(votes) == 1 or votes[0][1] > votes[1][1] else self.config.bandwidth_fallback
        cutoff = statistics.median(d.cutoff_hz for d in measured if d.token == token)
        return BandwidthChoice(token, "detected", cutoff)

    def _transcribe(self, wave: torch.Tensor, info: AudioInfo, name: str,
                    progress: Optional[Progress]) -> Transcript:
        bandwidth = self.choose_bandwidth(wave, info.sample_rate)
        wave = resample(wave, info.sample_rate, self.sample_rate)
        segments = self.segmenter(wave, self.sample_rate)
        if progress is not None:
            progress.reset(total=len(segments) * len(self.config.tasks))
        transcript = Transcript(name, info, bandwidth, self.config.tasks, self.config.lang)
        results: List[Dict[str, TaskResult]] = [{} for _ in segments]
        for task in self.config.tasks:
            for i, result in enumerate(self.decode_segments(wave, segments, task, bandwidth.token, progress)):
                results[i][task] = result
        transcript.segments = [
            SegmentResult(seg.start / self.sample_rate, seg.end / self.sample_rate, res)
            for seg, res in zip(segments, results)
        ]
        return transcript

    def decode_segments(
        self, wave: torch.Tensor, segments: Sequence[Segment], task: str, bandwidth: str,
        progress: Optional[Progress] = None,
    ) -> List[TaskResult]:
        """Best hypothesis of each segment for one task, in the segments' order.

        Args:
            wave: (Samples,) waveform at the model's rate.
            segments: Pieces of it, each at most the model's window.
            task: Task token (no angle brackets).
            bandwidth: ``nb`` or ``wb``.
            progress: As in :meth:`transcribe`.
        """
        order = sorted(range(len(segments)), key=lambda i: segments[i].start - segments[i].end)  # longest first
        out: List[Optional[TaskResult]] = [None] * len(segments)
        saved = self.s2t.beam_search
        self.s2t.beam_search = self.searches[task]
        try:
            for first in range(0, len(order), self.config.batch_size):
                batch = order[first : first + self.config.batch_size]
                speech = [wave[segments[i].start : segments[i].end] for i in batch]
                nbests = self.s2t.batch_decode(speech, lang_sym=f"<{self.config.lang}>", task_sym=f"<{task}>",
                                               bandwidth=f"<{bandwidth}>")
                for i, nbest in zip(batch, nbests):
                    _, tokens, _, text, hyp = nbest[0]
                    n_tokens = sum(1 for t in tokens if not (t.startswith("<") and t.endswith(">")))
                    out[i] = TaskResult((text or "").strip(), float(hyp.score), n_tokens)
                if progress is not None:
                    progress.update(len(batch))
        finally:
            self.s2t.beam_search = saved
        return out
