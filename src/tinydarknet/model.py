"""Tiny-DarkNet as the zoo sees it: an image classifier (loss, evaluation and deploy are the task's)."""
from src.registry import ModelSpec, register_model

SPEC = register_model(ModelSpec("tinydarknet", "classification", builder="src.tinydarknet.net:tinydarknet"))
