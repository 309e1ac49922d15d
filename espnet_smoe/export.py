"""Export one route of an S-MoE model as a dense model.

S-MoE routing is known before the model runs: a bandwidth token picks the
encoder experts, a task token the decoder experts. Fixing the token keeps one
expert per layer, and that expert is an ordinary FFN, so the route is a dense
model of the hard-sharing size:

* bandwidth and task fixed (or every S-MoE part fixed): a plain ESPnet S2T
  model (``encoder: conformer``, ``decoder: transformer``, ``model: espnet``,
  ``preprocessor: s2t``) that ``espnet2.bin.s2t_inference`` of an ESPnet
  install without this plugin decodes;
* only the bandwidth fixed: the encoder becomes dense, the decoder keeps its
  task experts (still ``model: smoe``, decoded with ``espnet_smoe``).

What changes in the config of a plain export:

* ``encoder``/``decoder``: the S-MoE class becomes the ESPnet class it extends
  (``smoe_conformer`` -> ``conformer``, ``smoe_transformer`` ->
  ``transformer``); ``routing``, ``num_experts``, ``smoe_layers`` are dropped.
* ``model: smoe`` -> ``espnet``, without the options ESPnet's model lacks:
  ``mask_guiding_targets`` (training loss only: whether the task-token target
  is trained), ``share_encoder_passes`` (training speed only) and
  ``moe_aux_loss_weight`` (no auxiliary loss without a learned gate). None of
  them changes decoding.
* ``preprocessor: smoe_s2t`` -> ``s2t``, without ``bandwidth_name`` and
  ``pad_speech``. ESPnet's ``Speech2Text`` pads every input to
  ``speech_length`` seconds (and trims longer ones); a model trained with
  ``pad_speech: false`` decodes unpadded in ``espnet_smoe``. No ESPnet setting
  turns the padding off, so such an export decodes what the S-MoE model
  decodes for inputs of at least ``speech_length`` seconds (both trim), but
  shorter inputs reach it padded with silence it was not trained on. The
  export warns and says so in ``route.yaml``; a model trained with padding
  (ESPnet's default) decodes identically at every length.

Every other key (frontend, normalisation and its statistics, token list,
sentencepiece model, ``preprocessor_conf`` timing symbols) is kept, and the
files the config names are packed with it in ESPnet's zip layout
(``espnet2.main_funcs.pack_funcs.pack``: ``meta.yaml`` with
``s2t_train_config``/``s2t_model_file``).
"""

import argparse
import contextlib
import copy
import inspect
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import espnet2.tasks.s2t as s2t_tasks
import torch
import yaml
from espnet2.main_funcs.pack_funcs import pack, unpack
from espnet2.tasks.s2t import S2TTask

from espnet_smoe.registration import REGISTRY
from espnet_smoe.routing import GuidedExperts
from espnet_smoe.smoe_feed_forward import SMoEFeedForward
from espnet_smoe.task import SMoES2TTask
from espnet_smoe.upcycling import smoe_blocks

PathLike = Union[str, Path]


class RouteError(ValueError):
    """The requested route does not exist in this model."""


@dataclass
class Route:
    """Which expert each S-MoE part keeps.

    Attributes:
        bandwidth: Bandwidth guiding token, e.g. ``<nb>`` (None: not fixed).
        task: Task guiding token, e.g. ``<asr>`` (None: not fixed).
        encoder_expert: Expert index the encoder keeps (None: keeps all).
        decoder_expert: Expert index the decoder keeps (None: keeps all).
        notes: What the route leaves as it was (a token given for a part
            without experts), for the summary.
    """

    bandwidth: Optional[str] = None
    task: Optional[str] = None
    encoder_expert: Optional[int] = None
    decoder_expert: Optional[int] = None
    notes: List[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        """``nb_asr``-style name of the route, for file names."""
        parts = [t.strip("<>") for t in (self.bandwidth, self.task) if t is not None]
        return "_".join(parts)


def guiding_token(name: str) -> str:
    """``nb``, ``<nb>`` -> ``<nb>``."""
    return "<" + name.strip().strip("<>") + ">"


def resolve_route(
    model: torch.nn.Module, bandwidth: Optional[str], task: Optional[str]
) -> Route:
    """Map the bandwidth and task tokens to the experts the route keeps.

    Args:
        model: The S-MoE model (``ESPnetSMoES2TModel``).
        bandwidth: ``nb``/``<nb>``, or None.
        task: ``asr``/``<asr>``, or None.

    Raises:
        RouteError: an unknown token (naming it and the known ones), a part
            whose experts have no route (a learned gate), or nothing to fix.
    """
    route = Route()
    for part, kind, name in (("encoder", "bandwidth", bandwidth), ("decoder", "task", task)):
        module = getattr(model, part)
        if not isinstance(module, GuidedExperts) and any(
            hasattr(m, "aux_loss") for m in module.modules()
        ):
            raise RouteError(
                f"the {part} ({type(module).__name__}) picks its experts with a learned "
                "gate per frame/token: there is no fixed route to export"
            )
        if name is None:
            continue
        token = guiding_token(name)
        if not isinstance(module, GuidedExperts):
            route.notes.append(f"the {part} has no experts: --{kind} {token} changes nothing there")
            logging.warning(route.notes[-1])
            setattr(route, kind, token)
            continue
        if token not in module.routing:
            raise RouteError(
                f"{kind} token {token} is not routed by the {part}; known {kind} "
                f"tokens: {sorted(module.routing)}"
            )
        setattr(route, kind, token)
        setattr(route, f"{part}_expert", module.routing[token])
    if route.encoder_expert is None and route.decoder_expert is None:
        raise RouteError(
            "nothing to export: give --bandwidth for an S-MoE encoder "
            f"({_known(model.encoder)}) and/or --task for an S-MoE decoder "
            f"({_known(model.decoder)})"
        )
    return route


def _known(module: torch.nn.Module) -> str:
    if isinstance(module, GuidedExperts):
        return f"tokens {sorted(module.routing)}"
    return "this one has no experts"


def route_state_dict(
    state: Dict[str, torch.Tensor], blocks: Dict[str, SMoEFeedForward], expert: int
) -> Dict[str, torch.Tensor]:
    """Keep one expert of each block as a dense ``PositionwiseFeedForward``.

    Args:
        state: Full model state dict (not modified).
        blocks: Block prefix (ending in ".") -> block, see ``smoe_blocks``.
        expert: The expert index to keep.

    Returns:
        A new state dict: ``<ffn>.w_1 (E, H, D)`` ... become ``<ffn>.w_1.weight
        (H, D)``, ``<ffn>.w_1.bias (H,)``, ``<ffn>.w_2.weight (D, H)``,
        ``<ffn>.w_2.bias (D,)`` of that expert.
    """
    state = dict(state)
    for prefix in blocks:
        stacked = {name: state.pop(prefix + name) for name in ("w_1", "b_1", "w_2", "b_2")}
        # clone: a saved view would carry the whole expert stack with it
        state[prefix + "w_1.weight"] = stacked["w_1"][expert].clone()
        state[prefix + "w_1.bias"] = stacked["b_1"][expert].clone()
        state[prefix + "w_2.weight"] = stacked["w_2"][expert].clone()
        state[prefix + "w_2.bias"] = stacked["b_2"][expert].clone()
    return state


def _espnet_name(attribute: str, cls: type) -> str:
    """The ESPnet registry name of the nearest ESPnet class ``cls`` extends."""
    choices = getattr(s2t_tasks, attribute)
    ours = set(REGISTRY.get(attribute, {}))
    for base in cls.__mro__[1:]:
        for name, registered in choices.classes.items():
            if registered is base and name not in ours:
                return name
    raise RouteError(f"{cls.__name__} extends no class of ESPnet's {attribute}")


def _added_options(cls: type, base: type) -> List[str]:
    """Constructor arguments of ``cls`` that ``base`` does not take."""
    def params(c):
        return {
            p.name
            for p in inspect.signature(c.__init__).parameters.values()
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name != "self"
        }
    return sorted(params(cls) - params(base))


def _to_espnet_class(conf: Dict[str, Any], key: str, notes: List[str]) -> Optional[Tuple[type, type]]:
    """Replace ``conf[key]`` (an S-MoE name) by ESPnet's; drop the added options."""
    attribute = f"{key}_choices"
    name = conf.get(key)
    if name not in REGISTRY.get(attribute, {}):
        return None
    choices = getattr(s2t_tasks, attribute)
    cls = choices.classes[name]
    dense = _espnet_name(attribute, cls)
    options = conf.get(f"{key}_conf") or {}
    dropped = {k: options.pop(k) for k in _added_options(cls, choices.classes[dense]) if k in options}
    conf[key] = dense
    conf[f"{key}_conf"] = options
    notes.append(f"{key}: {name} -> {dense}" + (f", dropped {dropped}" if dropped else ""))
    return cls, choices.classes[dense]


def route_config(conf: Dict[str, Any], route: Route, plain: bool) -> Tuple[Dict[str, Any], List[str]]:
    """The training config of the exported route.

    Args:
        conf: The S-MoE model's config.yaml (not modified).
        route: What is fixed.
        plain: True when no S-MoE part remains: model and preprocessor
            become ESPnet's too.

    Returns:
        The new config and a list of the changes, one line each.
    """
    conf = copy.deepcopy(conf)
    notes: List[str] = []
    if route.encoder_expert is not None:
        _to_espnet_class(conf, "encoder", notes)
    if route.decoder_expert is not None:
        _to_espnet_class(conf, "decoder", notes)
    if not plain:
        return conf, notes
    _to_espnet_class(conf, "model", notes)
    pre_conf = dict(conf.get("preprocessor_conf") or {})
    if _to_espnet_class(conf, "preprocessor", notes) and not pre_conf.get("pad_speech", True):
        notes.append(
            f"decoding input: the S-MoE model was trained and decodes unpadded "
            f"(pad_speech: false); ESPnet's Speech2Text pads every input to speech_length "
            f"({pre_conf.get('speech_length')} s), so hypotheses equal the S-MoE model's "
            "only for inputs at least that long"
        )
        logging.warning(notes[-1])
    left = {k: conf.get(k[: -len("_choices")]) for k in REGISTRY}
    plugin = {k: v for k, v in left.items() if v in REGISTRY[k]}
    if plugin:
        raise RouteError(f"the exported config still needs espnet_smoe classes: {plugin}")
    return conf, notes


# Config keys whose string values may name files that the model needs.
_FILE_KEYS = ("bpemodel", "token_list")


def _file_references(conf: Dict[str, Any]) -> List[str]:
    """Existing files named by ``bpemodel``, ``token_list`` or any ``*_conf``."""
    found: List[str] = []

    def walk(value):
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v)
        elif isinstance(value, str) and value not in found and Path(value).is_file():
            found.append(value)

    for key, value in conf.items():
        if key in _FILE_KEYS and isinstance(value, str):
            walk(value)
        elif key.endswith("_conf"):
            walk(value)
    return found


def _replace_strings(value, mapping: Dict[str, str]):
    if isinstance(value, dict):
        return {k: _replace_strings(v, mapping) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_strings(v, mapping) for v in value]
    if isinstance(value, str):
        return mapping.get(value, value)
    return value


def _load_source(config: Path, model_file: Path) -> Tuple[torch.nn.Module, Dict[str, Any]]:
    """Build the S-MoE model from its config and load every parameter strictly."""
    model, _ = SMoES2TTask.build_model_from_file(config, None, "cpu")
    state = torch.load(model_file, map_location="cpu", weights_only=True)
    try:
        # ESPnet loads with strict=False; a route must come from a complete model
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise RuntimeError(f"{model_file} does not fit {config}: {e}") from e
    with open(config, encoding="utf-8") as f:
        conf = yaml.safe_load(f)
    return model.eval(), conf


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def export_route(
    out: PathLike,
    *,
    model_zip: Optional[PathLike] = None,
    config: Optional[PathLike] = None,
    model_file: Optional[PathLike] = None,
    bandwidth: Optional[str] = None,
    task: Optional[str] = None,
) -> Dict[str, Any]:
    """Write the route's model as a packed zip.

    Args:
        out: Output zip (ESPnet's pack layout).
        model_zip: The S-MoE model, packed by ``espnet2.bin.pack s2t``; or
        config, model_file: its training config.yaml and .pth.
        bandwidth: Bandwidth token whose encoder experts to keep (``nb``).
        task: Task token whose decoder experts to keep (``asr``).

    Returns:
        A summary: the route, whether the result is a plain ESPnet model,
        parameter counts, and the config changes.
    """
    out = Path(out).absolute()
    if (model_zip is None) == (config is None):
        raise ValueError("give either model_zip or config (+ model_file)")
    with tempfile.TemporaryDirectory(prefix="export_route_") as tmp:
        tmp = Path(tmp)
        source_root: Optional[Path] = None
        if model_zip is not None:
            source_root = tmp / "source"
            files = unpack(model_zip, source_root)
            config, model_file = files["s2t_train_config"], files.get("s2t_model_file")
        if model_file is None:
            raise ValueError(f"no model file: give model_file (with config {config})")
        config, model_file = Path(config), Path(model_file)
        model, conf = _load_source(config, model_file)
        route = resolve_route(model, bandwidth, task)

        state = model.state_dict()
        for part, expert in (("encoder", route.encoder_expert), ("decoder", route.decoder_expert)):
            if expert is not None:
                state = route_state_dict(state, smoe_blocks(getattr(model, part), f"{part}."), expert)
        plain = all(
            not isinstance(getattr(model, part), GuidedExperts) or expert is not None
            for part, expert in (("encoder", route.encoder_expert), ("decoder", route.decoder_expert))
        )
        new_conf, changes = route_config(conf, route, plain)

        # stage the archive: config, weights and every file the config names
        tag = f"{config.parent.name}_route_{route.name}"
        stage = tmp / "stage"
        exp_dir = Path("exp") / tag
        (stage / exp_dir).mkdir(parents=True)
        members: Dict[str, str] = {}
        for path in _file_references(new_conf):
            resolved = Path(path).resolve()
            if source_root is not None and resolved.is_relative_to(source_root.resolve()):
                member = resolved.relative_to(source_root.resolve())
            else:
                member = exp_dir / resolved.name
                while str(member) in members.values():
                    member = member.with_name("_" + member.name)
            (stage / member).parent.mkdir(parents=True, exist_ok=True)
            (stage / member).write_bytes(resolved.read_bytes())
            members[path] = str(member)
        new_conf = _replace_strings(new_conf, members)

        # build the exported model from that config (as ESPnet will) and load
        # the routed weights strictly: every name and shape must fit
        task_cls = S2TTask if plain else SMoES2TTask
        with contextlib.chdir(stage):
            target = task_cls.build_model(argparse.Namespace(**copy.deepcopy(new_conf)))
            target.load_state_dict(state, strict=True)
        config_member = exp_dir / "config.yaml"
        model_member = exp_dir / model_file.name
        with open(stage / config_member, "w", encoding="utf-8") as f:
            yaml.safe_dump(new_conf, f, indent=4, sort_keys=False)
        torch.save(target.state_dict(), stage / model_member)
        summary = {
            "out": str(out),
            "source": str(model_zip if model_zip is not None else model_file),
            "bandwidth": route.bandwidth,
            "task": route.task,
            "encoder_expert": route.encoder_expert,
            "decoder_expert": route.decoder_expert,
            "plain_espnet": plain,
            "params": count_parameters(target),
            "source_params": count_parameters(model),
            "changes": route.notes + changes,
        }
        with open(stage / exp_dir / "route.yaml", "w", encoding="utf-8") as f:
            yaml.safe_dump({k: v for k, v in summary.items() if k != "out"}, f, sort_keys=False)
        with contextlib.chdir(stage):
            pack(
                files={"s2t_model_file": str(model_member)},
                yaml_files={"s2t_train_config": str(config_member)},
                outpath=out,
                option=[str(exp_dir / "route.yaml")] + sorted(set(members.values())),
            )
    return summary
