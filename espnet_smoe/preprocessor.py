"""``smoe_s2t``: ESPnet's S2T preprocessor plus the per-utterance bandwidth token."""

from typing import Dict, Union

import numpy as np
from espnet2.train.preprocessor import S2TPreprocessor


class SMoES2TPreprocessor(S2TPreprocessor):
    """S2TPreprocessor that also turns ``utt2bw`` entries into token ids.

    The data name ``bandwidth`` (a ``text`` file ``<utt-id> <nb>``) becomes a
    one-element int64 array holding the token id, which the data loader
    collates to (Batch, 1) and the ``smoe`` model uses to route the encoder.
    ``nb`` and ``<nb>`` are both accepted.

    Args:
        train: Training mode (passed to ``S2TPreprocessor``).
        bandwidth_name: Data name of the bandwidth token.
        **kwargs: Everything ``S2TPreprocessor`` takes.
    """

    def __init__(self, train: bool, bandwidth_name: str = "bandwidth", **kwargs):
        super().__init__(train, **kwargs)
        self.bandwidth_name = bandwidth_name

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
