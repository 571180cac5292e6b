"""Tiny-DarkNet image classifier: the network (net.py) and its spec (model.py, found by src.registry)."""
