import numpy as np
import pytest

from espnet_smoe.preprocessor import SMoES2TPreprocessor


@pytest.fixture(scope="module")
def preprocessor(token_list):
    return SMoES2TPreprocessor(train=False, token_type="word", token_list=token_list, speech_length=1)


def test_bandwidth_token_becomes_its_id(preprocessor, token_list):
    for written in ("<nb>", "nb", " <wb> "):
        out = preprocessor("utt1", {"bandwidth": written, "speech": np.zeros(800, dtype=np.float32)})
        symbol = "<" + written.strip().strip("<>") + ">"
        assert out["bandwidth"].tolist() == [token_list.index(symbol)]
        assert out["speech"].shape == (16000, 1)  # ESPnet's S2T padding still applied


def test_unknown_bandwidth_names_utterance(preprocessor):
    expected = (r"utterance spk1-utt7: bandwidth token '<tel>' is not in the token list; "
                r"expected one like \['<nb>', '<wb>'\]")
    with pytest.raises(ValueError, match=expected):
        preprocessor("spk1-utt7", {"bandwidth": "<tel>"})
