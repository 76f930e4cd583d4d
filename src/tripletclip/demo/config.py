"""The demo's presets: which regime of the papers, which world, and the run configs of the trainings.

A preset (``demo/presets/NAME.yaml``, shipped with the package, or any YAML path) holds the demo's own fields
(:class:`DemoConfig`) plus two run-config blocks in the format of ``tripletclip train`` presets:

- ``run``: every objective's training (fine-tuning from the base, or from scratch);
- ``base``: the CLIP base's pretraining (fine-tuning regime only).

``methods`` lists what the demo compares: an objective by its registry name (``negclip``), or a *variant*, a
labelled objective with run-config overrides of its own (:class:`Method`), e.g. TripletCLIP with CyCLIP's
regularisers::

    methods:
      - negclip
      - {name: tripletclip+cyclip, objective: tripletclip, run: {loss: {cyclip_cross: 0.25, cyclip_in: 0.25}}}

A variant changes what is learned, never the compute: the keys of :data:`EQUAL_COMPUTE_KEYS` (architecture,
starting weights, steps, batch, seed, data) are refused in its ``run``. Empty ``methods``: every registered
objective but the opt-in ones (``demo/run.py``).

What the base takes from ``run`` is decided by key, never by merging the blocks (:meth:`DemoConfig.base_config`):
the architecture keys (:data:`ARCHITECTURE_KEYS`) are shared, since the runs load the base's weights; the
machine's execution settings (:data:`RUNTIME_KEYS`) are shared unless ``base.*`` sets them; every other key
(locks, negatives, steps, batch, learning rate, loss, ...) is a fine-tuning knob that reaches the base only when
given as ``base.*``, over the run-config defaults. So ``run.model.lock_image=true`` locks the fine-tuning runs'
image tower, never the base's.

Regimes (docs/methods.md section 4.10; measurements in docs/world_experiments.md, section 3):

- ``finetune``: NegCLIP (arXiv 2210.01936), CE-CLIP (arXiv 2306.08832) and TripletCLIP Table 7 (arXiv 2411.02545):
  a CLIP base pretrained once on the world, then every objective fine-tunes it at equal compute.
- ``scratch``: TripletCLIP Tables 3-4: every objective trains from random weights on one fixed training set seen
  for ``epochs`` passes; the synthetic pairs (x', y') are extra data, as on CC3M.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Optional, Sequence

from tripletclip.config.load import ConfigError, apply_overrides, build_dataclass, deep_merge, read_yaml_preset
from tripletclip.config.schema import RunConfig

REGIMES = ("finetune", "scratch")
# shared by the base and the runs: the runs fine-tune the base's weights, so the network must be the same one
ARCHITECTURE_KEYS = ("model.name", "model.force_quick_gelu")
# how the trainings run on this machine, not what they learn: the base takes the runs' values unless base.* sets them
RUNTIME_KEYS = ("data.type", "data.workers", "data.prefetch_factor", "train.precision", "train.threads",
                "train.log_every", "model.trim_text", "model.grad_checkpointing", "train.keep_host_memory")
# fixed for every method of a demo (equal compute: same tower, start, steps, batch, positives and seeds); a
# method's own ``run`` block may not set them (loss.name is its ``objective``)
EQUAL_COMPUTE_KEYS = ARCHITECTURE_KEYS + ("model.pretrained", "train.steps", "train.batch_size", "train.seed",
                                          "train.name", "train.output_dir", "data", "loss.name", "eval")
METHOD_LABEL = re.compile(r"^[a-z0-9][a-z0-9+._-]*$")  # a results.json key and a run folder name
# always so for the base: plain CLIP on positives (never an objective's negatives)
BASE_FIXED = {"loss": {"name": "clip", "kwargs": {}}, "data": {"use_neg_text": False, "use_neg_image": False}}


@dataclass(frozen=True)
class Method:
    """One compared method: ``label`` (results.json key, run folder), the registered ``objective`` it trains,
    and ``run``: run-config overrides of this method only, merged over the preset's ``run``."""

    label: str
    objective: str
    run: dict[str, Any] = field(default_factory=dict)


def plan_size(steps: int, batch: int, epochs: int) -> int:
    """Training triplets a demo generates (demo/run.py ``_plan``): a fresh set, or one seen ``epochs`` times."""
    return max(batch, steps * batch // epochs)


def parse_method(entry: Any, where: str = "methods") -> Method:
    """A ``methods`` entry: an objective name, or ``{name, objective, run}`` (objective defaults to name)."""
    if isinstance(entry, str):
        entry = {"name": entry}
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise ConfigError(f"{where}: {entry!r} is neither an objective name nor a mapping with a 'name'")
    unknown = sorted(set(entry) - {"name", "objective", "run"})
    if unknown:
        raise ConfigError(f"{where}: {entry['name']}: unknown key(s) {unknown}; a method has name, objective, run")
    label, objective, run = entry["name"], entry.get("objective", entry["name"]), entry.get("run") or {}
    if not METHOD_LABEL.match(label):
        raise ConfigError(f"{where}: name {label!r}: use lower-case letters, digits and + . _ - (it names a folder)")
    if not isinstance(objective, str) or not isinstance(run, dict):
        raise ConfigError(f"{where}: {label}: objective must be a name and run a mapping")
    fixed = sorted(k for k in _flat(run) if any(k == f or k.startswith(f + ".") for f in EQUAL_COMPUTE_KEYS))
    if fixed:
        raise ConfigError(f"{where}: {label}: run.{fixed[0]} is the same for every method (equal compute); set it in "
                          f"the preset's run block" + ("" if fixed[0] != "loss.name" else ", or the method's objective"))
    return Method(label, objective, dict(run))


@dataclass
class WarmStart:
    """A small-pool warm start of every fine-tuning run (docs/world_experiments.md sections 14-15; demo/warm.py):
    ``steps`` steps on a warm world of ``rows`` positives (scene seed = world seed + ``seed_offset``), then the
    run's remaining steps on the demo's shards from those weights. ``rows`` or ``steps`` 0: off."""

    rows: int = 0
    steps: int = 0
    seed_offset: int = 20_000

    @property
    def on(self) -> bool:
        return self.rows > 0 and self.steps > 0


@dataclass
class DemoConfig:
    regime: str = "finetune"
    world_spec: str = "demo"  # a named world spec (tripletclip.world.build.SPEC_PRESETS)
    # NOTE: world seed 0 is the development seed on which the design was chosen; reported numbers use others
    world_seed: int = 1
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    n_bench: int = 200  # benchmark rows per SugarCrepe category (half seen, half held-out compositions)
    n_retrieval: int = 500
    # symmetric pairs per category of the transfer benchmark (2 rows each per split; demo/transfer.py); 0 = none
    n_transfer: int = 150
    n_neg: int = 1  # hard negatives (distinct edit types) generated per training triplet
    train_edit_types: list[str] = field(default_factory=list)  # edit types of training negatives ([]: all seven)
    epochs: int = 1  # passes over one fixed training set of steps x batch / epochs triplets (1 = every scene fresh)
    # order the training set in blocks of one batch with no mutual colour swap in a block, read in order
    # (world/batches.py; needs run.data.shuffle_buffer <= 1 and data.workers <= 1)
    batch_without_swaps: bool = False
    # fine-tuning regime: start from these weights (a run folder, checkpoint folder or weights file) instead of
    # the cached base pretrained by `tripletclip world pretrain`
    base_from: str = ""
    # fine-tuning regime: the fraction of the base's pretraining samples that come as a caption stating a relation
    # and its mirror twin, side by side in one batch (world/mirror.py; needs base.data.shuffle_buffer <= 1,
    # data.workers <= 1 and an even base batch); 0 = the base sees independent scenes only
    base_mirror_pairs: float = 0.0
    run: dict[str, Any] = field(default_factory=dict)
    base: dict[str, Any] = field(default_factory=dict)
    # compared methods: objective names or {name, objective, run} variants ([]: the registered objectives)
    methods: list[Any] = field(default_factory=list)
    # fine-tuning regime: phase 1 on a small warm world, then the rest of the steps on the demo's shards (off: 0)
    warm_start: WarmStart = field(default_factory=WarmStart)

    def __post_init__(self) -> None:
        problems = []
        if self.regime not in REGIMES:
            problems.append(f"regime: '{self.regime}' is not one of {', '.join(REGIMES)}")
        if not self.seeds:
            problems.append("seeds: give at least one training seed")
        for name in ("n_bench", "epochs"):
            if getattr(self, name) < 1:
                problems.append(f"{name}: must be >= 1, got {getattr(self, name)}")
        if self.n_transfer < 0:
            problems.append(f"n_transfer: must be >= 0, got {self.n_transfer}")
        if self.n_retrieval < 0:
            problems.append(f"n_retrieval: must be >= 0, got {self.n_retrieval}")
        from tripletclip.edit_types import SUGARCREPE_TYPES

        bad = [t for t in self.train_edit_types if t not in SUGARCREPE_TYPES]
        if bad:
            problems.append(f"train_edit_types: unknown {bad}; choose from {', '.join(SUGARCREPE_TYPES)}")
        if not 1 <= self.n_neg <= len(self.train_edit_types or SUGARCREPE_TYPES):
            problems.append(f"n_neg: must be in [1, number of training edit types], got {self.n_neg}")
        if self.batch_without_swaps:
            run = self.run_config()
            if run.data.shuffle_buffer > 1 or run.data.workers > 1:
                problems.append(f"batch_without_swaps: the loader must read the blocks in order, so set "
                                f"run.data.shuffle_buffer=0 and run.data.workers<=1 (got {run.data.shuffle_buffer}, "
                                f"{run.data.workers})")
            elif plan_size(run.train.steps, run.train.batch_size, self.epochs) % run.train.batch_size:
                problems.append(f"batch_without_swaps: the training set (run.train.steps x batch_size / epochs) must "
                                f"be a whole number of batches of {run.train.batch_size}")
        if not 0.0 <= self.base_mirror_pairs <= 1.0:
            problems.append(f"base_mirror_pairs: must be in [0, 1], got {self.base_mirror_pairs}")
        elif self.base_mirror_pairs:
            base = self.base_config()
            if base.data.shuffle_buffer > 1 or base.data.workers > 1 or base.train.batch_size % 2:
                problems.append(f"base_mirror_pairs: the base must read its pairs in order in even batches, so set "
                                f"base.data.shuffle_buffer=0, data.workers<=1 and an even base.train.batch_size (got "
                                f"{base.data.shuffle_buffer}, {base.data.workers}, {base.train.batch_size})")
        problems += self._warm_problems()
        if problems:
            raise ConfigError("demo preset: " + "; ".join(problems))
        labels = [m.label for m in self.method_specs()]
        if len(set(labels)) < len(labels):
            raise ConfigError(f"demo preset: methods: a name occurs twice in {labels}")

    def _warm_problems(self) -> list[str]:
        """What makes :attr:`warm_start` unusable (nothing when it is off)."""
        warm = self.warm_start
        if warm.rows < 0 or warm.steps < 0:
            return [f"warm_start: rows and steps must be >= 0 (0 = off), got {warm.rows}, {warm.steps}"]
        if not warm.on:
            return []
        if self.regime != "finetune":
            return ["warm_start: the fine-tuning regime only (it fine-tunes the base in two phases); set "
                    "warm_start.rows=0 or regime=finetune"]
        train = self.run_config().train
        if not 0 < warm.steps < train.steps:
            return [f"warm_start.steps: must lie between 0 and run.train.steps={train.steps} (phase 2 trains the "
                    f"rest), got {warm.steps}"]
        if warm.rows < train.batch_size:
            return [f"warm_start.rows: must be >= run.train.batch_size={train.batch_size}, got {warm.rows}"]
        if self.batch_without_swaps and warm.rows % train.batch_size:
            return [f"warm_start.rows: batch_without_swaps orders the warm world in blocks of one batch, so it must "
                    f"be a multiple of run.train.batch_size={train.batch_size}, got {warm.rows}"]
        return []

    def method_specs(self) -> list[Method]:
        """The preset's methods, parsed (:func:`parse_method`)."""
        return [parse_method(m, f"demo preset: methods[{i}]") for i, m in enumerate(self.methods)]

    def method_run_dict(self, method: Method) -> dict[str, Any]:
        """One method's run config: the preset's ``run``, its own overrides, its objective."""
        return deep_merge(deep_merge(dict(self.run), method.run), {"loss": {"name": method.objective}})

    def run_dict(self) -> dict[str, Any]:
        """The objectives' run config (a RunConfig as a nested dict, before per-job settings)."""
        return dict(self.run)

    def run_config(self) -> RunConfig:
        """The objectives' typed run config (defaults filled in; ``data.train`` is set per demo later)."""
        from tripletclip.config import config_from_dict

        return config_from_dict(self.run, where="run")

    def base_dict(self) -> dict[str, Any]:
        """The base's pretraining run config as a nested dict: architecture and runtime keys of ``run``, then
        ``base``, then :data:`BASE_FIXED` (plain CLIP)."""
        run = self.run_config()  # typed: a typo in run.* is reported here, before anything is built
        shared = {}
        for key in ARCHITECTURE_KEYS + RUNTIME_KEYS:
            section, name = key.split(".")
            shared.setdefault(section, {})[name] = getattr(getattr(run, section), name)
        for key in ARCHITECTURE_KEYS:
            section, name = key.split(".")
            given = self.base.get(section, {}).get(name) if isinstance(self.base.get(section), dict) else None
            if given is not None and given != shared[section][name]:
                raise ConfigError(f"demo preset: base.{key}={given!r} differs from run.{key}="
                                  f"{shared[section][name]!r}: the runs fine-tune the base, so the architecture is "
                                  f"shared; set run.{key} (it applies to both)")
        loss = self.base.get("loss")
        if loss and (not isinstance(loss, dict) or loss.get("name", "clip") != "clip" or loss.get("kwargs")):
            raise ConfigError(f"demo preset: base.loss={loss!r}: the base is always plain CLIP pretraining; remove "
                              f"base.loss (run.loss.name sets the objectives)")
        return deep_merge(deep_merge(shared, self.base), BASE_FIXED)

    def base_config(self) -> RunConfig:
        """The base's typed pretraining config (defaults filled in; ``data.train`` is set when it is pretrained)."""
        from tripletclip.config import config_from_dict

        return config_from_dict(self.base_dict(), where="base")


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict) and tree and prefix.rsplit(".", 1)[-1] not in ("kwargs", "args", "aug", "lr_mult"):
        return {k: v for key, sub in tree.items() for k, v in _flat(sub, f"{prefix}.{key}" if prefix else key).items()}
    return {prefix: tree}


def settings_diff(cfg: DemoConfig, preset: DemoConfig) -> dict[str, dict[str, list[Any]]]:
    """Resolved settings of ``cfg`` that differ from its ``preset`` as read: ``{"demo"|"run"|"base": {dotted key:
    [preset value, value]}}``; the base's entry is empty when the overrides leave the base as the preset has it."""
    from tripletclip.config import config_to_dict

    pairs = {"demo": ({k: v for k, v in config_to_dict(preset).items() if k not in ("run", "base")},
                      {k: v for k, v in config_to_dict(cfg).items() if k not in ("run", "base")}),
             "run": (config_to_dict(preset.run_config()), config_to_dict(cfg.run_config())),
             "base": (config_to_dict(preset.base_config()), config_to_dict(cfg.base_config()))}
    out: dict[str, dict[str, list[Any]]] = {}
    for part, (old, new) in pairs.items():
        a, b = _flat(old), _flat(new)
        out[part] = {k: [a.get(k), b.get(k)] for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}
    return out


def _show(value: Any) -> str:
    """A value as it is written on the command line (true, 1e-05, [0, 1])."""
    import json

    return value if isinstance(value, str) else json.dumps(value)


def describe_diff(diff: dict[str, dict[str, list[Any]]], preset: str, regime: str) -> list[str]:
    """A few lines for the start of the demo: what differs from the preset, for the runs and for the base."""
    lines = []
    for part, label in (("demo", "demo"), ("run", "runs"), ("base", "base")):
        if part == "base" and regime != "finetune":
            continue
        changes = ", ".join(f"{k}={_show(new)} (preset {_show(old)})" for k, (old, new) in diff.get(part, {}).items())
        lines.append(f"[demo] {label}: {changes or f'as in preset {preset}'}")
    return lines


def preset_dir() -> Path:
    return Path(str(resources.files("tripletclip.demo") / "presets"))


def preset_names() -> list[str]:
    return sorted(p.stem for p in preset_dir().glob("*.yaml"))


def preset_path(preset: Optional[str]) -> Path:
    """A shipped preset by name (``demo``, ``demo-quick``, ...) or a YAML file by path."""
    name = preset or "demo"
    shipped = preset_dir() / f"{name}.yaml"
    if shipped.is_file():
        return shipped
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    raise ConfigError(f"demo preset '{name}': neither a shipped preset ({', '.join(preset_names())}) "
                      f"nor a YAML file; pass --preset NAME or --preset path/to/preset.yaml")


def load_demo_config(preset: Optional[str] = None, overrides: Sequence[str] = ()) -> DemoConfig:
    """Read a demo preset (``_base_`` includes allowed), apply dotted overrides (``run.train.steps=50``) and check
    the run and base configs they resolve to (a typo or wrong type is one line, before anything is built)."""
    path = preset_path(preset)
    data = read_yaml_preset(path)
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        block = key.split(".", 1)[0]
        if block in ("run", "base") and "." in key:
            # typed like `tripletclip train` overrides: run.optim.lr=1e-4 is the float, run.train.steps=1e3 an error
            data[block] = apply_overrides(dict(data.get(block) or {}), [item.split(".", 1)[1]])
        else:
            data = apply_overrides(data, [item])
    cfg = build_dataclass(DemoConfig, data, where=str(path))
    cfg.run_config()
    cfg.base_config()
    from tripletclip.config import config_from_dict

    for m in cfg.method_specs():  # typed: a typo in a method's own run block is one line too
        config_from_dict(cfg.method_run_dict(m), where=f"methods: {m.label}: run")
    return cfg
