"""A training step's host syncs do not grow with the batch.

On a GPU each host sync makes the host wait until the device has run all
queued work. Counted on the CPU (``HostSyncCounter``), one forward+backward of
the plugin's model, fed by its collate's ``host_rows``, must make the same
number at 16 and at 128 rows, and at most ``MAX_SYNCS``.
"""

import pytest
import torch
from espnet2.s2t.espnet_model import ESPnetS2TModel

from espnet_smoe.batch import SMoECollateFn
from espnet_smoe.host_syncs import HostSyncCounter

# What a step makes: ESPnet's S2T forward trims the batch to its longest text (2: a
# boolean-mask write, a .max()) and speech (1), checks the encoder's output length (1);
# ESPnet's pad masks (8 in the encoder and decoder: .tolist(), .max()); its label
# smoothing counts the targets (1); the plugin's decoder inputs take their width (1).
MAX_SYNCS = 16
NO_DROPOUT = dict(enc_kw={"positional_dropout_rate": 0.0}, dec_kw={"positional_dropout_rate": 0.0})


def collated(token_list, rows: int, seed: int = 0):
    """A collated batch as the data loader gives it: each recording as an ASR and an ST row,
    both bandwidths, padding, some rows with previous text."""
    t = token_list.index
    g = torch.Generator().manual_seed(seed)
    items = []
    for r in range(rows // 2):
        frames = 24 - r % 5  # (Frames, 20) features
        audio = torch.randn(frames, 20, generator=g).numpy()
        bandwidth = t("<nb>") if r % 3 else t("<wb>")
        words = torch.randint(t("w0"), t("w19") + 1, (3 + r % 4,), generator=g).tolist()
        for task in ("<asr>", "<st_fra>"):
            prev = words[:2] if r % 4 == 0 else [t("<na>")]
            items.append((f"rec{r}_{task[1:-1]}", {
                "speech": audio,
                "text": torch.tensor([t("<eng>"), t(task), t("<notimestamps>")] + words).numpy(),
                "text_prev": torch.tensor(prev).numpy(),
                "text_ctc": torch.tensor(words).numpy(),
                "bandwidth": torch.tensor([bandwidth]).numpy(),
            }))
    utt_ids, batch = SMoECollateFn(float_pad_value=0.0, int_pad_value=-1)(items)
    batch["utt_id"] = utt_ids
    return batch


def syncs_of_one_step(model, batch) -> HostSyncCounter:
    with HostSyncCounter() as syncs:
        model(**batch)[0].backward()
    return syncs


@pytest.mark.parametrize("parts", ["dense", "smoe"], ids=["hard_sharing", "smoe_encdec"])
def test_syncs_of_a_training_step_do_not_grow_with_rows(token_list, build, parts):
    torch.manual_seed(0)
    model = build(token_list, encoder=parts, decoder=parts, **NO_DROPOUT).train()
    small, large = (syncs_of_one_step(model, collated(token_list, rows)) for rows in (16, 128))
    assert small.total == large.total, (dict(small.counts), dict(large.counts))
    assert large.total <= MAX_SYNCS, dict(large.counts)
    assert not {"nonzero", "bincount", "masked_select"} & set(large.counts), dict(large.counts)


def test_the_counter_sees_espnets_per_row_syncs(token_list, build):
    """ESPnet's own S2T model prepares its losses row by row: the counter must see it."""
    torch.manual_seed(0)
    model = build(token_list, encoder="dense", decoder="dense", model_cls=ESPnetS2TModel, **NO_DROPOUT).train()
    small, large = (syncs_of_one_step(model, collated(token_list, rows)) for rows in (16, 128))
    assert large.total - small.total >= 3 * (128 - 16), (dict(small.counts), dict(large.counts))
    assert large.counts["bool_index"] >= 128  # y[y != ignore_id] per row


def test_the_collate_records_what_the_host_knows(token_list):
    batch = collated(token_list, 6)
    rows = batch["host_rows"]
    assert rows["audio"] == [0, 0, 2, 2, 4, 4]  # the ASR and ST row of each recording
    t = token_list.index
    assert rows["bandwidth"] == [t("<wb>")] * 2 + [t("<nb>")] * 4
    assert rows["text_prev"][0] == batch["text_prev"][0, :2].tolist()  # without padding
    assert rows["text"][2] == batch["text"][2, : int(batch["text_lengths"][2])].tolist()
