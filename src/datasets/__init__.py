"""Dataset readers and transforms (CIFAR-10 binary, ImageNet folders, COCO),
the built-in demo datasets and the dataset check."""
