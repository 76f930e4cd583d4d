"""Typed configuration: dataclasses (schema) filled from YAML presets plus dotted overrides (load)."""
from tripletclip.config.load import ConfigError, config_from_dict, config_to_dict, load_config, save_config
from tripletclip.config.schema import (
    DataConfig,
    EvalConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    TrainConfig,
)

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
    "config_to_dict",
    "load_config",
    "save_config",
]
