"""Fine-tuning and training: `facerestore train CONFIG.yaml --hq DIR` or `train(config, hq=...)`.

config.py: the YAML schema (`load_config`) and `entry_from_config` (a config's model as a ZooEntry);
trainer.py: the loop (`train`, `Trainer`); recipes.py: per-family losses; data.py: data order and
datasets (incl. DPR relighting pairs, checked custom LQ/HQ pairs); init.py: the weights a run starts
from (`--init` a zoo name, an official-layout file or a training checkpoint).
"""
from .config import Config, ConfigError, entry_from_config, load_config
from .trainer import Trainer, TrainingError, read_csv, train

__all__ = ["Config", "ConfigError", "entry_from_config", "load_config", "Trainer", "TrainingError", "read_csv",
           "train"]
