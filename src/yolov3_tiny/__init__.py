"""YOLOv3-Tiny object detector: network, targets, loss, decoding; model.py is its spec."""
