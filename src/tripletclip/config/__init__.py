"""Typed configuration: dataclasses (schema) filled from YAML presets plus dotted overrides (load)."""
from tripletclip.config.load import (
    ConfigError,
    config_from_dict,
    config_to_dict,
    dump_config,
    load_config,
    save_config,
)
from tripletclip.config.schema import (
    DataConfig,
    EvalConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    TrainConfig,
)
from tripletclip.config.validate import config_problems

__all__ = [
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "RunConfig",
    "TrainConfig",
    "config_from_dict",
    "config_problems",
    "config_to_dict",
    "dump_config",
    "load_config",
    "save_config",
]
