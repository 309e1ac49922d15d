import espnet2.tasks.s2t as s2t_tasks
import pytest

import espnet_smoe
from espnet_smoe.registration import REGISTRY, register


def test_names_are_registered_with_espnet_s2t():
    assert s2t_tasks.encoder_choices.get_class("smoe_conformer") is espnet_smoe.SMoEConformerEncoder
    assert s2t_tasks.decoder_choices.get_class("smoe_transformer") is espnet_smoe.SMoETransformerDecoder
    assert s2t_tasks.model_choices.get_class("smoe") is espnet_smoe.ESPnetSMoES2TModel
    assert s2t_tasks.preprocessor_choices.get_class("smoe_s2t") is espnet_smoe.SMoES2TPreprocessor
    register()  # idempotent
    assert "gated_moe_conformer" in s2t_tasks.encoder_choices.choices()


def test_moved_espnet_internals_fail_loudly(monkeypatch):
    monkeypatch.setattr(s2t_tasks, "encoder_choices", {"conformer": object})
    with pytest.raises(ImportError, match=r"espnet2.tasks.s2t.encoder_choices is not a ClassChoices.*espnet==202611"):
        register()


def test_name_taken_by_another_class_fails(monkeypatch):
    class Other(s2t_tasks.encoder_choices.base_type or object):
        pass

    monkeypatch.setitem(s2t_tasks.encoder_choices.classes, "smoe_conformer", Other)
    with pytest.raises(ImportError, match="already taken"):
        register()
    assert set(REGISTRY) == {"encoder_choices", "decoder_choices", "model_choices", "preprocessor_choices"}
