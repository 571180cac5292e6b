"""Tiny-DarkNet image classifier."""
from src.tinydarknet.net import TinyDarkNet, tinydarknet

__all__ = ["TinyDarkNet", "tinydarknet"]
