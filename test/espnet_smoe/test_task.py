"""The task's training setup: host rows in every batch, fused optimizers, no GradScaler under bf16."""

import espnet2.train.trainer as espnet_trainer
import torch
from espnet2.train.trainer import Trainer

from espnet_smoe.batch import HOST_ROWS, SMoECollateFn
from espnet_smoe.task import SMoES2TTask, SMoETrainer, fused_optim_conf


def test_collate_adds_host_rows():
    collate = SMoES2TTask.build_collate_fn(None, train=True)
    assert isinstance(collate, SMoECollateFn)
    data = [("a", {"speech": torch.ones(5).numpy(), "text": torch.tensor([3, 4]).numpy()}),
            ("b", {"speech": torch.ones(3).numpy(), "text": torch.tensor([5]).numpy()})]
    ids, batch = collate(data)
    assert ids == ["a", "b"] and batch["text"].tolist() == [[3, 4], [5, -1]]  # ESPnet's S2T padding
    assert batch[HOST_ROWS] == {"audio": [0, 1], "text": [[3, 4], [5]]}


def test_fused_where_torch_has_it_and_the_parameters_are_on_a_gpu():
    conf = {"lr": 1e-3}
    assert fused_optim_conf(torch.optim.AdamW, conf, {"cuda"}) == {"lr": 1e-3, "fused": True}
    assert fused_optim_conf(torch.optim.AdamW, conf, {"cpu"}) is conf
    assert fused_optim_conf(torch.optim.AdamW, conf, {"cuda", "cpu"}) is conf
    assert fused_optim_conf(torch.optim.Adadelta, conf, {"cuda"}) is conf  # no fused kernel
    assert fused_optim_conf(torch.optim.AdamW, {"fused": False}, {"cuda"}) == {"fused": False}  # the config's say


def test_no_grad_scaler_under_bf16(monkeypatch):
    class Scaler:  # stands for torch's GradScaler, which a machine without CUDA disables anyway
        def __init__(self, enabled=True):
            self.enabled = enabled

    made = []
    monkeypatch.setattr(Trainer, "run", classmethod(lambda cls: made.append(espnet_trainer.GradScaler())))
    monkeypatch.setattr(espnet_trainer, "GradScaler", Scaler)
    monkeypatch.setattr(espnet_trainer, "autocast_args", {"dtype": torch.bfloat16})
    SMoETrainer.run()
    monkeypatch.setattr(espnet_trainer, "autocast_args", {})  # fp16 autocast needs its scaler
    SMoETrainer.run()
    assert [s.enabled for s in made] == [False, True]
    assert espnet_trainer.GradScaler is Scaler  # put back after the run
    assert SMoES2TTask.trainer is SMoETrainer


def test_attention_plots_get_tensors_only(monkeypatch):
    seen = []

    def plot(cls, model, output_dir, summary_writer, iterator, reporter, options):
        seen.extend(batch for _, batch in iterator)

    monkeypatch.setattr(Trainer, "plot_attention", classmethod(plot))
    batch = {"speech": torch.zeros(2, 3), HOST_ROWS: {"audio": [0, 1]}}
    SMoETrainer.plot_attention(None, None, None, [(["a", "b"], batch)], None, None)
    assert list(seen[0]) == ["speech"]
