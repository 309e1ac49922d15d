"""The batched loss preparation equals ESPnet's per-row one, on ESPnet's own modules."""

import pytest
import torch
from espnet2.s2t.espnet_model import ESPnetS2TModel

from espnet_smoe.model import s2t_decoder_io

# no dropout anywhere: the two ways are compared on the same forward
NO_DROPOUT = dict(enc_kw={"positional_dropout_rate": 0.0}, dec_kw={"positional_dropout_rate": 0.0})


def mixed_batch(token_list, seed=0):
    """ASR and ST rows; `<na>` and real previous text; padding everywhere; one row without CTC target."""
    t = token_list.index
    g = torch.Generator().manual_seed(seed)

    def words(n):
        return torch.randint(t("w0"), t("w19") + 1, (n,), generator=g).tolist()

    rows = [  # (task, previous text or None, words, CTC target or None)
        ("<asr>", None, 5, 5),
        ("<st_fra>", 3, 7, 4),
        ("<asr>", 1, 2, 2),
        ("<st_fra>", None, 6, None),  # text.ctc holds <na>: CTC skips the row
        ("<asr>", 4, 1, 1),
    ]
    text, prev, ctc = [], [], []
    for task, n_prev, n_words, n_ctc in rows:
        text.append([t("<eng>"), t(task), t("<notimestamps>")] + words(n_words))
        prev.append(words(n_prev) if n_prev else [t("<na>")])
        ctc.append(words(n_ctc) if n_ctc else [t("<na>")])

    def pad(seqs):
        out = torch.full((len(seqs), max(map(len, seqs))), -1, dtype=torch.long)
        for i, s in enumerate(seqs):
            out[i, : len(s)] = torch.tensor(s)
        return out, torch.tensor([len(s) for s in seqs])

    (text, text_lengths), (prev, prev_lengths), (ctc, ctc_lengths) = pad(text), pad(prev), pad(ctc)
    return text, text_lengths, prev, prev_lengths, ctc, ctc_lengths


def espnet_decoder_io(model, ys_pad, ys_prev_pad):
    """ESPnet's own per-row construction, captured at the decoder's input."""
    seen = {}

    def capture(module, args, kwargs):
        seen["in"], seen["lens"] = args[2], args[3]
        raise StopIteration

    handle = model.decoder.register_forward_pre_hook(capture, with_kwargs=True)
    try:
        ESPnetS2TModel._calc_att_loss(model, torch.zeros(ys_pad.size(0), 3, 16), torch.full((ys_pad.size(0),), 3),
                                      ys_pad, None, ys_prev_pad, None)
    except StopIteration:
        pass
    finally:
        handle.remove()
    return seen["in"], seen["lens"]


@pytest.mark.parametrize("decoder", ["smoe", "dense"])
def test_decoder_inputs_and_losses_equal_espnets(token_list, decoder, build):
    torch.manual_seed(0)
    model = build(token_list, decoder=decoder, lsm_weight=0.1, **NO_DROPOUT)
    text, text_lengths, prev, prev_lengths, ctc, ctc_lengths = mixed_batch(token_list)
    ys_in, ys_in_lens, ys_out = s2t_decoder_io(text, prev, sos=model.sos, eos=model.eos, sop=model.sop,
                                               na=model.na, ignore_id=model.ignore_id)
    ref_in, ref_lens = espnet_decoder_io(model, text, prev)
    assert ys_in.tolist() == ref_in.tolist() and ys_in_lens.tolist() == ref_lens.tolist()
    # targets: the inputs shifted by one, <eos> last, nothing on <sop> prev <sos>
    t = token_list.index
    assert ys_out[1, : int(prev_lengths[1]) + 1].tolist() == [-1] * (int(prev_lengths[1]) + 1)
    assert ys_out[0, : int(text_lengths[0]) + 1].tolist() == text[0, : int(text_lengths[0])].tolist() + [t("<eos>")]

    encoder_out, encoder_out_lens = torch.randn(5, 9, 16), torch.tensor([9, 7, 9, 4, 6])
    for train in (True, False):
        model.train(train)
        ours = model._calc_att_loss(encoder_out, encoder_out_lens, text, text_lengths, prev, prev_lengths)
        theirs = ESPnetS2TModel._calc_att_loss(model, encoder_out, encoder_out_lens, text, text_lengths, prev,
                                               prev_lengths)
        torch.testing.assert_close(ours[0], theirs[0], rtol=0, atol=1e-6)  # loss_att
        assert float(ours[1]) == pytest.approx(theirs[1], abs=1e-6)  # acc
        assert ours[2:] == theirs[2:]  # cer, wer (None in training)
        ours = model._calc_ctc_loss(encoder_out, encoder_out_lens, ctc, ctc_lengths)
        theirs = ESPnetS2TModel._calc_ctc_loss(model, encoder_out, encoder_out_lens, ctc, ctc_lengths)
        torch.testing.assert_close(ours[0], theirs[0], rtol=0, atol=1e-6)  # loss_ctc over 4 rows, not 5
        assert ours[1] == theirs[1]


def test_losses_equal_espnets_when_no_row_has_a_ctc_target_or_a_prompt(token_list, build):
    torch.manual_seed(1)
    model = build(token_list, **NO_DROPOUT)
    text, text_lengths, _, _, ctc, ctc_lengths = mixed_batch(token_list, seed=3)
    na = token_list.index("<na>")
    prev, prev_lengths = torch.full((5, 1), na), torch.ones(5, dtype=torch.long)
    encoder_out, encoder_out_lens = torch.randn(5, 9, 16), torch.full((5,), 9)
    ours = model._calc_att_loss(encoder_out, encoder_out_lens, text, text_lengths, prev, prev_lengths)
    theirs = ESPnetS2TModel._calc_att_loss(model, encoder_out, encoder_out_lens, text, text_lengths, prev,
                                           prev_lengths)
    torch.testing.assert_close(ours[0], theirs[0], rtol=0, atol=1e-6)
    no_target = torch.full((5, 2), na)
    ours = model._calc_ctc_loss(encoder_out, encoder_out_lens, no_target, torch.ones(5, dtype=torch.long))
    theirs = ESPnetS2TModel._calc_ctc_loss(model, encoder_out, encoder_out_lens, no_target, None)
    assert float(ours[0]) == float(theirs[0]) == 0.0


def test_whole_model_loss_and_gradients_equal_espnets_on_a_mixed_batch(token_list, build):
    """Dense parts: the plugin's training step equals ESPnet's S2T model on the same weights."""
    torch.manual_seed(2)
    ours = build(token_list, encoder="dense", decoder="dense", share_encoder_passes=False, **NO_DROPOUT)
    theirs = build(token_list, encoder="dense", decoder="dense", model_cls=ESPnetS2TModel, **NO_DROPOUT)
    theirs.load_state_dict(ours.state_dict())
    text, text_lengths, prev, prev_lengths, ctc, ctc_lengths = mixed_batch(token_list, seed=5)
    lengths = torch.tensor([40, 33, 40, 21, 28])
    speech = torch.randn(5, 40, 20) * (torch.arange(40)[None, :, None] < lengths[:, None, None])
    batch = dict(speech=speech, speech_lengths=lengths, text=text, text_lengths=text_lengths, text_prev=prev,
                 text_prev_lengths=prev_lengths, text_ctc=ctc, text_ctc_lengths=ctc_lengths)
    loss, stats, _ = ours(**{k: v.clone() for k, v in batch.items()})
    ref_loss, ref_stats, _ = theirs(**{k: v.clone() for k, v in batch.items()})
    torch.testing.assert_close(loss, ref_loss, rtol=0, atol=1e-6)
    for key in ("loss_att", "loss_ctc", "acc"):
        assert float(stats[key]) == pytest.approx(float(ref_stats[key]), abs=1e-6), key
    loss.backward()
    ref_loss.backward()
    ref_grads = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, ref_grads[name].grad, rtol=1e-5, atol=1e-6, msg=name)
