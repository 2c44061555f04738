"""rekd_core: rationale extraction (RE) and rationale-extraction knowledge distillation (REKD).

Plain PyTorch; imports nothing from the web, queue or UI layers.
"""

from .config import ConfigError, ExperimentConfig, parse_config

__all__ = ["ConfigError", "ExperimentConfig", "parse_config", "__version__"]
__version__ = "0.1.0"
