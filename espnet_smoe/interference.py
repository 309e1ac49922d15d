"""Task and bandwidth interference: gradient similarity and expert shares.

The S-MoE premise is that ASR and ST (and narrowband and wideband speech)
pull a shared network in different directions. This module measures it on a
trained model, batch by batch:

* **gradient cosine**: the rows of a batch are split by task (``<asr>`` rows
  vs ``<st_fra>`` rows) and, separately, by bandwidth (``<nb>`` vs ``<wb>``).
  Each subset goes through the model's own loss (``model(**subset)``: CTC +
  attention, guiding-token masking, any auxiliary loss) and its gradient is
  taken with ``torch.autograd.grad``. The two gradients are compared per
  parameter group (:func:`parameter_groups`) by their cosine similarity:
  near 1 the sides agree, near 0 they are unrelated, below 0 they conflict.
* **expert shares**: which expert every frame (encoder) or token (decoder) of
  each task and bandwidth went through, read from the routing the S-MoE
  blocks (and the learned-gate baseline's blocks) actually received.

Subsets are run one at a time, in eval mode (no dropout, batch norm with its
running statistics), so a subset's gradient depends only on its own rows and
is deterministic. ``share_encoder_passes`` only acts in training mode, so
every row is encoded on its own, as in validation.

A group that one side does not use (an encoder expert under the other
bandwidth) gets a zero gradient from that side; its cosine is undefined and
reported as ``null``, with the norms each side put on it.
"""

import math
from collections import defaultdict
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from espnet_smoe.smoe_feed_forward import ExpertRows, SMoEFeedForward

# Layer stacks whose blocks are split into one group per sub-module.
LAYER_STACKS = ("encoders", "decoders")

# (parameter index in the model's parameter list, expert index or None)
GroupMembers = List[Tuple[int, Optional[int]]]


def parameter_groups(model: torch.nn.Module) -> Dict[str, GroupMembers]:
    """Split a model's trainable parameters into named groups.

    * ``<part>.<stack>.<i>.<child>``: each sub-module of a layer block, e.g.
      ``encoder.encoders.0.self_attn``, ``encoder.encoders.0.conv_module``,
      ``decoder.decoders.1.src_attn``; a block's layer norms form one group
      ``<block>.norm``.
    * ``<module>.expert<e>``: one group per expert of an S-MoE block
      (``SMoEFeedForward``: slice ``e`` of its stacked weights).
    * anything else by its first two name components: ``encoder.embed``,
      ``encoder.after_norm``, ``decoder.embed``, ``decoder.output_layer``,
      ``ctc.ctc_lo`` ...

    Returns:
        Group name -> members, in the order of ``model.parameters()``.
    """
    expert_modules = {
        name: module for name, module in model.named_modules() if isinstance(module, SMoEFeedForward)
    }
    groups: Dict[str, GroupMembers] = {}
    for index, (name, param) in enumerate(model.named_parameters()):
        if not param.requires_grad:
            continue
        owner, _, _ = name.rpartition(".")
        if owner in expert_modules:
            for e in range(expert_modules[owner].num_experts):
                groups.setdefault(f"{owner}.expert{e}", []).append((index, e))
            continue
        parts = name.split(".")
        if len(parts) > 4 and parts[1] in LAYER_STACKS and parts[2].isdigit():
            child = "norm" if parts[3].startswith("norm") else parts[3]
            key = ".".join(parts[:3] + [child])
        else:
            key = ".".join(parts[:2]) if len(parts) > 2 else parts[0]
        groups.setdefault(key, []).append((index, None))
    return groups


def select_rows(batch: Dict[str, torch.Tensor], rows: Sequence[int]) -> Dict[str, torch.Tensor]:
    """The rows of a collated batch, as a batch of their own.

    Every ``<name>`` tensor with a ``<name>_lengths`` is cut to its longest
    selected row, so the subset carries the padding a batch of only these
    rows would have (the conformer's convolution sees padding). Entries
    that are no tensor (the collate's host rows, which index the whole
    batch) are left out: the model reads the subset's back.

    Args:
        batch: ESPnet's collated batch, e.g. ``speech`` (Batch, Samples),
            ``speech_lengths`` (Batch,), ``text`` (Batch, Length) ...
        rows: Row indices.
    """
    tensors = {name: value for name, value in batch.items() if isinstance(value, torch.Tensor)}
    index = torch.as_tensor(list(rows), dtype=torch.long, device=next(iter(tensors.values())).device)
    out = {name: value.index_select(0, index) for name, value in tensors.items()}
    for name in list(out):
        lengths = out.get(f"{name}_lengths")
        if lengths is not None and out[name].dim() > 1:
            out[name] = out[name][:, : int(lengths.max())]
    return out


def subset_gradients(
    model: torch.nn.Module,
    batch: Dict[str, torch.Tensor],
    rows: Sequence[int],
    groups: Dict[str, GroupMembers],
    utt_ids: Optional[Sequence[str]] = None,
) -> Dict[str, torch.Tensor]:
    """Gradient of the model's loss on some rows, flattened per group.

    Args:
        model: An ESPnet S2T model (its ``forward`` returns loss, stats, weight).
        batch: Collated batch (see :func:`select_rows`).
        rows: The rows to take the loss on.
        groups: From :func:`parameter_groups`.
        utt_ids: Keys of the batch rows (errors name them).

    Returns:
        Group name -> (N_group,) float32 gradient, on the CPU.
    """
    subset = select_rows(batch, rows)
    if utt_ids is not None:
        subset["utt_id"] = [utt_ids[r] for r in rows]
    params = list(model.parameters())
    loss, _, _ = model(**subset)
    wanted = sorted({i for members in groups.values() for i, _ in members})
    grads = torch.autograd.grad(loss, [params[i] for i in wanted], allow_unused=True)
    by_index = dict(zip(wanted, grads))
    out = {}
    for name, members in groups.items():
        pieces = []
        for i, expert in members:
            grad = by_index[i]
            if grad is None:  # the loss does not reach this parameter
                grad = torch.zeros_like(params[i])
            if expert is not None:
                grad = grad[expert]
            pieces.append(grad.detach().reshape(-1).float().cpu())
        out[name] = torch.cat(pieces)
    return out


def cosine(a: torch.Tensor, b: torch.Tensor) -> Optional[float]:
    """Cosine similarity of two flat gradients; None if either is all zeros."""
    a, b = a.double(), b.double()
    na, nb = a.norm(), b.norm()
    if na == 0 or nb == 0:
        return None
    return float((a @ b) / (na * nb))


def row_labels(
    batch: Dict[str, torch.Tensor],
    utt_ids: Sequence[str],
    task_ids: Dict[int, str],
    bandwidth_ids: Dict[int, str],
) -> Dict[str, List[str]]:
    """The task and bandwidth token of every row.

    The task is the first task token in the row's ``text`` (ESPnet's S2T
    prompt ``<lang><task>...``); the bandwidth is the ``bandwidth`` id that
    the ``smoe_s2t`` preprocessor made from ``utt2bw``.

    Args:
        batch: Collated batch with ``text`` (Batch, Length) and ``bandwidth``
            (Batch, 1).
        utt_ids: Keys of the rows.
        task_ids, bandwidth_ids: Token id -> token, e.g. {3: "<asr>"}.

    Returns:
        ``{"task": [...], "bandwidth": [...]}``, one token per row.
    """
    if "bandwidth" not in batch:
        raise ValueError(
            "the data has no 'bandwidth': add utt2bw, e.g. "
            "--data_path_and_name_and_type data/dev/utt2bw,bandwidth,text "
            "(and the config must use the smoe_s2t preprocessor)"
        )
    tasks, bandwidths = [], []
    text = batch["text"].tolist()
    for row, (uid, ids, bw) in enumerate(zip(utt_ids, text, batch["bandwidth"].reshape(len(text), -1)[:, 0])):
        task = next((task_ids[t] for t in ids if t in task_ids), None)
        if task is None:
            raise ValueError(
                f"utterance {uid}: its text holds none of the task tokens {sorted(task_ids.values())}"
            )
        tasks.append(task)
        bandwidth = bandwidth_ids.get(int(bw))
        if bandwidth is None:
            raise ValueError(
                f"utterance {uid}: bandwidth token id {int(bw)} is not one of {sorted(bandwidth_ids.values())}"
            )
        bandwidths.append(bandwidth)
    return {"task": tasks, "bandwidth": bandwidths}


class RoutingCounter:
    """Count, per expert, the frames/tokens each label sent there, from the routing.

    Hooks every ``SMoEFeedForward`` (S-MoE blocks, and the experts inside the
    learned-gate baseline's blocks) and records the expert it was given for
    every row (S-MoE) or every position (learned gate). Padded positions are
    not counted: the encoder's output lengths and the decoder's input lengths
    say which positions are real.

    Use as a context manager around one ``model(**batch)`` call, then
    :meth:`add` the batch's row labels.
    """

    def __init__(self, model: torch.nn.Module):
        self.blocks = {
            name: module for name, module in model.named_modules() if isinstance(module, SMoEFeedForward)
        }
        # Learned-gate blocks flatten (Batch, Length, D) before their experts:
        # their input shape maps positions back to rows.
        self.flatteners = {
            f"{name}.experts": module
            for name, module in model.named_modules()
            if isinstance(getattr(module, "experts", None), SMoEFeedForward)
        }
        self.model = model
        # block -> label -> (E,) counts
        self.counts: Dict[str, Dict[str, torch.Tensor]] = {}
        self._handles: List = []
        self._records: List[Tuple[str, torch.Size, torch.Tensor, Optional[torch.Size]]] = []
        self._lengths: Dict[str, torch.Tensor] = {}
        self._shapes: Dict[str, torch.Size] = {}

    def __enter__(self) -> "RoutingCounter":
        self._records, self._lengths, self._shapes = [], {}, {}
        for name, block in self.blocks.items():
            self._handles.append(block.register_forward_pre_hook(self._block_hook(name), with_kwargs=True))
        for name, module in self.flatteners.items():
            self._handles.append(module.register_forward_pre_hook(self._shape_hook(name)))
        for part in ("encoder", "decoder"):
            module = getattr(self.model, part, None)
            if module is not None:
                self._handles.append(module.register_forward_hook(self._length_hook(part), with_kwargs=True))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _block_hook(self, name):
        def hook(module, args, kwargs):
            x = args[0]
            expert = args[1] if len(args) > 1 else kwargs.get("expert")
            if expert is None:
                expert = module.routed_expert
            if isinstance(expert, ExpertRows):
                expert = expert.expert
            self._records.append((name, x.shape, expert.detach().cpu(), self._shapes.get(name)))

        return hook

    def _shape_hook(self, name):
        def hook(module, args):
            self._shapes[name] = args[0].shape

        return hook

    def _length_hook(self, part):
        def hook(module, args, kwargs, output):
            if part == "encoder":
                self._lengths[part] = output[1].detach().cpu()  # (Batch,) output frames
            else:  # decoder(hs_pad, hlens, ys_in_pad, ys_in_lens)
                lengths = args[3] if len(args) > 3 else kwargs["ys_in_lens"]
                self._lengths[part] = lengths.detach().cpu()  # (Batch,) input tokens

        return hook

    def add(self, labels: Dict[str, List[str]]) -> None:
        """Turn the recorded routing of the last forward into counts per label.

        Args:
            labels: Family -> one label per batch row (:func:`row_labels`).
        """
        for name, shape, expert, flat_shape in self._records:
            part = name.split(".")[0]
            lengths = self._lengths.get(part)
            if lengths is None:
                raise RuntimeError(f"{name}: no {part} lengths were recorded, cannot count its frames")
            batch = lengths.numel()
            if len(shape) == 3 and expert.numel() == shape[0] == batch:
                per_position = expert.unsqueeze(1).expand(batch, shape[1])  # one expert per row
            elif flat_shape is not None and expert.numel() == flat_shape[0] * flat_shape[1]:
                per_position = expert.reshape(flat_shape[0], flat_shape[1])  # one per position
            else:
                raise RuntimeError(f"{name}: cannot map routing {tuple(expert.shape)} of input {tuple(shape)} to rows")
            valid = torch.arange(per_position.size(1)).unsqueeze(0) < lengths.unsqueeze(1)  # (Batch, L)
            num_experts = self.blocks[name].num_experts
            per_row = torch.stack(
                [((per_position == e) & valid).sum(1) for e in range(num_experts)], dim=1
            )  # (Batch, E)
            block_counts = self.counts.setdefault(name, {})
            for family_labels in labels.values():
                for row, label in enumerate(family_labels):
                    block_counts.setdefault(label, torch.zeros(num_experts, dtype=torch.long))
                    block_counts[label] += per_row[row]
        self._records = []

    def result(self) -> Dict[str, dict]:
        """Block -> {unit, num_experts, counts: {label: [..]}, shares: {label: [..]}}."""
        out = {}
        for name, by_label in self.counts.items():
            out[name] = {
                "unit": "frames" if name.startswith("encoder") else "tokens",
                "num_experts": self.blocks[name].num_experts,
                "counts": {label: c.tolist() for label, c in by_label.items()},
                "shares": {
                    label: [float(x) / max(int(c.sum()), 1) for x in c.tolist()] for label, c in by_label.items()
                },
            }
        return out


class InterferenceMeter:
    """Accumulate gradient cosines over batches, per family and group.

    Args:
        groups: From :func:`parameter_groups`.
        families: Family -> its two sides, e.g.
            ``{"task": ["<asr>", "<st_fra>"], "bandwidth": ["<nb>", "<wb>"]}``.
    """

    def __init__(self, groups: Dict[str, GroupMembers], families: Dict[str, Sequence[str]]):
        for family, sides in families.items():
            if len(sides) != 2:
                raise ValueError(f"family {family!r} needs exactly two sides, got {list(sides)}")
        self.groups = groups
        self.families = {f: list(s) for f, s in families.items()}
        self.per_batch = {f: defaultdict(list) for f in families}  # group -> [cosine or None]
        self.norms = {f: defaultdict(lambda: defaultdict(list)) for f in families}  # group -> side -> [norm]
        self.sums: Dict[str, Dict[str, Dict[str, torch.Tensor]]] = {f: {} for f in families}  # side -> group -> sum
        self.compared = {f: 0 for f in families}
        self.skipped = {f: 0 for f in families}
        self.rows = {f: {s: 0 for s in sides} for f, sides in families.items()}

    def add_batch(
        self,
        model: torch.nn.Module,
        batch: Dict[str, torch.Tensor],
        labels: Dict[str, List[str]],
        utt_ids: Optional[Sequence[str]] = None,
    ) -> Dict[str, Optional[Dict[str, Optional[float]]]]:
        """Compare the sides of every family on one batch.

        Returns:
            Family -> group -> this batch's cosine (None for a family whose
            sides are not both in the batch).
        """
        out: Dict[str, Optional[Dict[str, Optional[float]]]] = {}
        for family, sides in self.families.items():
            rows = {side: [r for r, label in enumerate(labels[family]) if label == side] for side in sides}
            if not all(rows.values()):
                self.skipped[family] += 1
                out[family] = None
                continue
            grads = {}
            for side in sides:
                grads[side] = subset_gradients(model, batch, rows[side], self.groups, utt_ids)
                self.rows[family][side] += len(rows[side])
                sums = self.sums[family].setdefault(side, {})
                for group, g in grads[side].items():
                    sums[group] = g.clone() if group not in sums else sums[group] + g
                    self.norms[family][group][side].append(float(g.norm()))
            a, b = (grads[s] for s in sides)
            out[family] = {}
            for group in self.groups:
                value = cosine(a[group], b[group])
                self.per_batch[family][group].append(value)
                out[family][group] = value
            self.compared[family] += 1
        return out

    def result(self) -> Dict[str, dict]:
        """Family -> {sides, batches_compared, batches_skipped, rows, groups: {...}}.

        Per group: ``params`` (its size), ``cosine_mean`` / ``cosine_std`` over
        the batches where both sides put a gradient on it, ``cosine_of_sum``
        (the cosine of the gradients summed over batches), ``cosine_per_batch``,
        ``grad_norm`` (each side's mean gradient norm over the compared
        batches) and ``used_by`` (the sides whose gradient on it was nonzero).
        """
        out = {}
        for family, sides in self.families.items():
            groups = {}
            for group, members in self.groups.items():
                values = self.per_batch[family][group]
                defined = [v for v in values if v is not None]
                sums = [self.sums[family].get(side, {}).get(group) for side in sides]
                norms = {side: self.norms[family][group][side] for side in sides}
                groups[group] = {
                    "params": int(sums[0].numel()) if sums[0] is not None else None,
                    "cosine_mean": sum(defined) / len(defined) if defined else None,
                    "cosine_std": _std(defined),
                    "cosine_of_sum": cosine(*sums) if all(s is not None for s in sums) else None,
                    "batches": len(defined),
                    "cosine_per_batch": values,
                    "grad_norm": {side: (sum(n) / len(n) if n else None) for side, n in norms.items()},
                    "used_by": [side for side in sides if any(n > 0 for n in norms[side])],
                }
            out[family] = {
                "sides": sides,
                "batches_compared": self.compared[family],
                "batches_skipped": self.skipped[family],
                "rows": self.rows[family],
                "groups": groups,
            }
        return out


def _std(values: List[float]) -> Optional[float]:
    if len(values) < 2:
        return 0.0 if values else None
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
