"""``smoe_s2t``: ESPnet's S2T preprocessor plus the per-utterance bandwidth token."""

from typing import Dict, Tuple, Union

import numpy as np
from espnet2.train.preprocessor import S2TPreprocessor


class SMoES2TPreprocessor(S2TPreprocessor):
    """S2TPreprocessor that also turns ``utt2bw`` entries into token ids.

    The data name ``bandwidth`` (a ``text`` file ``<utt-id> <nb>``) becomes a
    one-element int64 array holding the token id, which the data loader
    collates to (Batch, 1) and the ``smoe`` model uses to route the encoder.
    ``nb`` and ``<nb>`` are both accepted.

    ``pad_speech: false`` trims to ``speech_length`` but does not pad: ESPnet's
    S2T pads every utterance to ``speech_length`` (30 s by default), which
    multiplies the compute on short prompts. ``SMoESpeech2Text`` reads the
    same key and decodes unpadded too. Timestamps then lose their fixed
    frame grid, so use it with untimed text (``time_apply_prob: 1.0``).

    Args:
        train: Training mode (passed to ``S2TPreprocessor``).
        bandwidth_name: Data name of the bandwidth token.
        pad_speech: Pad to ``speech_length`` as ESPnet does (default True).
        **kwargs: Everything ``S2TPreprocessor`` takes.
    """

    def __init__(
        self,
        train: bool,
        bandwidth_name: str = "bandwidth",
        pad_speech: bool = True,
        **kwargs,
    ):
        super().__init__(train, **kwargs)
        self.bandwidth_name = bandwidth_name
        self.pad_speech = pad_speech

    def _pad_or_trim_speech(self, data: Dict) -> Tuple[Dict, int]:
        if self.pad_speech:
            return super()._pad_or_trim_speech(data)
        speech = data.get(self.speech_name)
        if speech is not None:
            data[self.speech_name] = speech[: self.speech_length]  # (Time, ...) trimmed
        return data, 0

    def __call__(
        self, uid: str, data: Dict[str, Union[str, np.ndarray]]
    ) -> Dict[str, np.ndarray]:
        token = data.pop(self.bandwidth_name, None)
        data = super().__call__(uid, data)
        if token is not None:
            data[self.bandwidth_name] = self.bandwidth_token_id(uid, token)
        return data

    def bandwidth_token_id(self, uid: str, token: Union[str, np.ndarray]) -> np.ndarray:
        if not isinstance(token, str):
            raise ValueError(
                f"utterance {uid}: '{self.bandwidth_name}' must be read as text "
                f"(e.g. utt2bw,{self.bandwidth_name},text), got {type(token).__name__}"
            )
        symbol = "<" + token.strip().strip("<>") + ">"
        token_id = self.token_id_converter.token2id.get(symbol)
        if token_id is None or symbol == "<>":
            known = [t for t in ("<nb>", "<wb>") if t in self.token_id_converter.token2id]
            raise ValueError(
                f"utterance {uid}: bandwidth token {token!r} is not in the token "
                f"list; expected one like {known}"
            )
        return np.array([token_id], dtype=np.int64)
