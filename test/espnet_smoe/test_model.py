import numpy as np
import pytest
import torch
from espnet2.s2t.espnet_model import ESPnetS2TModel

from espnet_smoe.batch import describe_rows, same_audio
from espnet_smoe.checkpoint import verify_smoe_state_dict
from espnet_smoe.model import s2t_decoder_io
from espnet_smoe.routing import RoutingError


def batch(token_list, tasks=("<asr>", "<st_fra>"), bws=("<nb>", "<wb>")):
    t = token_list.index
    n = len(tasks)
    text = torch.tensor([[t("<eng>"), t(task), t("<notimestamps>"), t("w1"), t("w2")] for task in tasks])
    return dict(
        speech=torch.randn(n, 40, 20), speech_lengths=torch.full((n,), 40),
        text=text, text_lengths=torch.full((n,), 5),
        text_prev=torch.full((n, 1), t("<na>")), text_prev_lengths=torch.ones(n, dtype=torch.long),
        text_ctc=torch.tensor([[t("w1"), t("w2")]] * n), text_ctc_lengths=torch.full((n,), 2),
        bandwidth=torch.tensor([[t(b)] for b in bws]), bandwidth_lengths=torch.ones(n, dtype=torch.long),
        utt_id=[f"utt{i}" for i in range(n)],
    )


def test_forward_backward_and_bandwidth_routes_encoder(token_list, build):
    model = build(token_list)
    loss, stats, weight = model(**batch(token_list))
    loss.backward()
    assert torch.isfinite(loss) and weight == 2
    w = model.encoder.encoders[0].feed_forward.w_1
    assert w.grad[0].abs().sum() > 0 and w.grad[1].abs().sum() > 0  # nb row -> 0, wb row -> 1
    model.zero_grad()
    model(**batch(token_list, bws=("<nb>", "<nb>")))[0].backward()
    assert torch.count_nonzero(w.grad[1]) == 0


def test_model_build_rejects_unknown_guiding_tokens(token_list, build):
    bad = [t for t in token_list if t != "<st_fra>"]
    with pytest.raises(ValueError, match=r"\['<st_fra>'\] are not in the token list"):
        build(bad)


def test_runtime_errors_name_the_utterance(token_list, build):
    model = build(token_list)
    b = batch(token_list)
    b["bandwidth"] = None
    with pytest.raises(ValueError, match=r"\['utt0', 'utt1'\] have no bandwidth"):
        model(**b)
    b = batch(token_list, bws=("<nb>", "<eng>"))
    with pytest.raises(RoutingError, match=r"utterances \['utt1'\].*'<eng>'.*known tokens: \['<nb>', '<wb>'\]"):
        model(**b)
    b = batch(token_list, tasks=("<asr>", "w3"))
    with pytest.raises(RoutingError, match=r"utterances \['utt1'\].*no guiding token"):
        model(**b)


def test_task_token_target_gets_no_gradient(token_list, build):
    """The leak hazard: the logit that predicts <asr>/<st_fra> must not be trained."""
    model = build(token_list)
    captured = {}

    def keep_logits(module, inputs, out):
        out.retain_grad()
        captured["logits"] = out

    model.decoder.output_layer.register_forward_hook(keep_logits)
    model(**batch(token_list))[0].backward()
    grad = captured["logits"].grad  # (Batch, L, V); input <sos> <eng> <task> ...
    assert torch.count_nonzero(grad[:, 1]) == 0  # position <eng> predicts the task token
    assert grad[:, 0].abs().sum() > 0 and grad[:, 2].abs().sum() > 0
    # and with the mask switched off, that position is trained like ESPnet does
    plain = build(token_list, mask_guiding_targets=False)
    plain.decoder.output_layer.register_forward_hook(keep_logits)
    plain(**batch(token_list))[0].backward()
    assert captured["logits"].grad[:, 1].abs().sum() > 0


def test_dense_parts_run_unchanged_like_espnet(token_list, build):
    """model: smoe with dense encoder and decoder equals ESPnet's S2T model."""
    torch.manual_seed(1)
    ours = build(token_list, encoder="dense", decoder="dense").eval()
    theirs = build(token_list, encoder="dense", decoder="dense", model_cls=ESPnetS2TModel).eval()
    theirs.load_state_dict(ours.state_dict())
    b = batch(token_list)
    loss_ours = ours(**b)[0]
    b.pop("bandwidth"), b.pop("bandwidth_lengths")
    assert torch.allclose(loss_ours, theirs(**b)[0])


def test_checkpoint_verification_names_missing_experts(token_list, build):
    model = build(token_list)
    state = model.state_dict()
    verify_smoe_state_dict(model, state, "ok.pth")
    del state["decoder.decoders.0.feed_forward.w_2"]
    missing = r"bad.pth: 1 S-MoE parameters missing \['decoder.decoders.0.feed_forward.w_2'\]"
    with pytest.raises(RuntimeError, match=missing):
        verify_smoe_state_dict(model, state, "bad.pth")
    dense = build(token_list, encoder="dense", decoder="dense").state_dict()
    with pytest.raises(RuntimeError, match="dense_to_smoe_state_dict"):
        verify_smoe_state_dict(model, dense, "dense.pth")


def test_shared_encoder_passes_give_the_same_loss_and_gradients(token_list, build):
    """The ASR and ST rows of one recording are encoded once, with identical results."""
    torch.manual_seed(3)
    # dropout 0, no SpecAugment, no batch norm (its batch statistics count each distinct
    # recording once when shared): training is deterministic and row-independent
    kw = dict(enc_kw={"use_cnn_module": False, "positional_dropout_rate": 0.0},
              dec_kw={"positional_dropout_rate": 0.0})
    shared = build(token_list, **kw).train()
    separate = build(token_list, share_encoder_passes=False, **kw).train()
    separate.load_state_dict(shared.state_dict())
    b = batch(token_list, tasks=("<asr>", "<st_fra>", "<asr>", "<st_fra>"), bws=("<nb>", "<nb>", "<wb>", "<wb>"))
    audio = torch.randn(2, 40, 20)
    b["speech"] = audio.repeat_interleave(2, dim=0)  # rows 0,1: recording A (nb); rows 2,3: B (wb)
    b["speech_lengths"] = torch.tensor([40, 40, 33, 33])
    seen = []
    shared.encoder.register_forward_pre_hook(lambda m, args: seen.append(args[0].size(0)))
    # host_rows as the data loader's collate adds them; without them the model reads the same back
    loss_shared = shared(**b, host_rows=describe_rows(b))[0]
    loss_read_back = shared(**b)[0]
    loss_separate = separate(**b)[0]
    assert seen == [2, 2]  # two encoder rows for four samples
    torch.testing.assert_close(loss_shared, loss_separate)
    torch.testing.assert_close(loss_read_back, loss_shared, rtol=0, atol=0)
    loss_shared.backward()
    loss_separate.backward()
    grads = dict(separate.named_parameters())
    for name, p in shared.named_parameters():
        torch.testing.assert_close(p.grad, grads[name].grad, msg=name)
    # same audio but another bandwidth token is another encoder input
    b["speech"], b["speech_lengths"] = torch.zeros(4, 40, 20), torch.tensor([40, 40, 40, 33])
    plan = shared.plan_batch(b, describe_rows(b))
    assert plan.unique.tolist() == [0, 2, 3] and plan.inverse.tolist() == [0, 0, 1, 2]
    assert plan.encoder.expert.tolist() == [0, 1, 1]  # <nb>, <wb>, <wb>: one row per encoder pass
    assert plan.decoder.expert.tolist() == [0, 1, 0, 1]  # <asr>, <st_fra>, ...
    b["speech"][0, 5] = 1.0  # rows 0 and 1 now hold different audio
    assert shared.plan_batch(b).unique is None  # four encoder rows: nothing to share
    shared.eval()
    seen.clear()
    shared(**b)
    assert seen == [4]  # inference-time batches are never merged


def test_host_rows_route_like_the_tensors_and_name_the_utterance(token_list, build):
    """Routing from the collate's host rows equals routing from the tensors; a bad token is named."""
    model = build(token_list, enc_kw={"positional_dropout_rate": 0.0}, dec_kw={"positional_dropout_rate": 0.0})
    t = token_list.index
    b = batch(token_list, tasks=("<st_fra>", "<asr>", "<st_fra>"), bws=("<wb>", "<wb>", "<nb>"))
    b["text_prev"] = torch.tensor([[t("<na>"), -1], [t("w3"), t("<asr>")], [t("<na>"), -1]])
    b["text_prev_lengths"] = torch.tensor([1, 2, 1])
    plan = model.plan_batch(b, describe_rows(b))
    assert plan.encoder.expert.tolist() == [1, 1, 0]
    # row 1's previous text holds <asr>: the decoder routes by the first guiding token of its input
    assert plan.decoder.expert.tolist() == [1, 0, 1]
    assert plan.decoder.counts == (1, 2)
    assert model.decoder.experts_for_prefix(s2t_decoder_io(
        b["text"], b["text_prev"], model.sos, model.eos, model.sop, model.na, model.ignore_id)[0]) == [1, 0, 1]
    rows = describe_rows(b)
    rows["bandwidth"][1] = t("<eng>")  # the host's copy is what routes
    with pytest.raises(RoutingError, match=r"utterances \['utt1'\].*'<eng>'.*known tokens: \['<nb>', '<wb>'\]"):
        model(**b, host_rows=rows)
    # host rows of another batch (DataParallel splits tensors, not lists) are read back instead
    rows = describe_rows({k: v[:2] for k, v in b.items() if k != "utt_id"})
    torch.testing.assert_close(model(**b, host_rows=rows)[0], model(**b, host_rows=describe_rows(b))[0])


@pytest.mark.parametrize("parts", ["smoe", "dense"])
def test_dev_stats_hold_each_tasks_attention_loss(token_list, parts, build):
    """loss_att_<task> on a mixed batch equals loss_att of a batch of that task's rows only."""
    torch.manual_seed(0)
    model = build(token_list, encoder=parts, decoder=parts).eval()
    b = batch(token_list, tasks=("<asr>", "<st_fra>", "<asr>"), bws=("<nb>", "<wb>", "<wb>"))

    def rows(*keep):
        return {k: [v[i] for i in keep] if k == "utt_id" else v[list(keep)] for k, v in b.items()}

    mixed, asr_only, st_only = (model(**rows(*keep))[1] for keep in ((0, 1, 2), (0, 2), (1,)))
    assert mixed["loss_att_asr"] == pytest.approx(float(asr_only["loss_att"]), rel=1e-5)
    assert mixed["loss_att_st_fra"] == pytest.approx(float(st_only["loss_att"]), rel=1e-5)
    assert float(mixed["loss_att_asr"]) != pytest.approx(float(mixed["loss_att_st_fra"]), rel=1e-3)
    assert "loss_att_st_fra" not in asr_only  # a task absent from a batch is not reported
    # training batches pay nothing for it
    assert not any(k.startswith("loss_att_") for k in model.train()(**batch(token_list))[1])


def _reference_shared_rows(speech, lengths, bandwidth):
    """Reference: rows keyed by their length, bandwidth and the bytes of their audio."""
    first_of_key, unique, inverse = {}, [], []
    for row in range(speech.size(0)):
        n = int(lengths[row])
        key = (n, int(bandwidth[row]), speech[row, :n].numpy().tobytes())
        if key not in first_of_key:
            first_of_key[key] = len(unique)
            unique.append(row)
        inverse.append(first_of_key[key])
    return unique, inverse


@pytest.mark.parametrize("features", [False, True])
def test_shared_rows_match_a_reference_on_length_sorted_batches(token_list, build, features):
    """Many recordings of one length (as TTS audio in a length-sorted batch): the rows encoded
    once are exactly the twins that keying rows by their audio bytes finds."""
    g = torch.Generator().manual_seed(5)
    n_rec = 24
    lens = torch.tensor([300 + 10 * (i // 6) for i in range(n_rec)])  # 6 recordings per length
    shape = (n_rec, 340, 3) if features else (n_rec, 340)
    audio = torch.randn(shape, generator=g) * (torch.arange(340)[None, :, *([None] if features else [])]
                                                 < lens[:, None, *([None] if features else [])])
    audio[5] = audio[4]  # same audio, same length, but spoken in another bandwidth below
    audio[7, :300] = audio[6, :300]  # same first 300 samples, other length: different recordings
    bws = torch.tensor([token_list.index("<nb>" if i % 2 else "<wb>") for i in range(n_rec)])
    order = torch.randperm(2 * n_rec, generator=g)  # ASR and ST rows of each recording, shuffled
    speech = audio.repeat_interleave(2, 0)[order]
    lengths, bandwidth = lens.repeat_interleave(2)[order], bws.repeat_interleave(2)[order]
    # padding beyond a row's length is not audio: garbage there must not split twins
    speech[lengths < 340, -1] = torch.rand(int((lengths < 340).sum()), *speech.shape[2:], generator=g)
    model = build(token_list, decoder="dense").train()
    b = dict(speech=speech, speech_lengths=lengths, bandwidth=bandwidth[:, None])
    plan = model.plan_batch(b, describe_rows(b))
    ref_unique, ref_inverse = _reference_shared_rows(speech, lengths, bandwidth)
    assert (plan.unique.tolist(), plan.inverse.tolist()) == (ref_unique, ref_inverse)
    assert len(ref_unique) == n_rec  # 4 and 5 differ by bandwidth, 6 and 7 by length


def test_same_audio_compares_rows_in_full():
    """Rows alike at every sampled position but one value apart are different audio."""
    a = np.random.default_rng(0).standard_normal(640).astype(np.float32)
    b = a.copy()
    b[1] += 1.0  # between the strided samples that bucket the rows
    assert same_audio([a, b, a.copy(), b.copy(), a[:600]]) == [0, 1, 0, 1, 4]
