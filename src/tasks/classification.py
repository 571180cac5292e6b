"""Classification task: CIFAR-10 / ImageNet data, label-smoothed CE, top-1/top-5."""
import time

import mindspore as ms
import numpy as np
from mindspore import nn

from src.datasets.check import check_data_or_raise
from src.datasets.classification import build_classification_dataset
from src.losses import LabelSmoothingCrossEntropy

PRIMARY_METRIC = "top_1_accuracy"


def check_inputs(cfg, splits=("train",)):
    """Raise a DataError now if a needed split is unusable or contradicts the config
    (before outputs are written)."""
    check_data_or_raise(cfg, splits)


def train_dataset(cfg, ctx, seed: int):
    """Shuffled, augmented, sharded training batches ``(image, label)``."""
    return build_classification_dataset(cfg, "train", ctx.rank, ctx.group_size, seed=seed)


def eval_dataset(cfg, ctx=None, batch_size: int = None):
    """Every evaluation sample, in order, ``(image, label)``."""
    return build_classification_dataset(cfg, "eval", batch_size=batch_size)


def loss_network(cfg, net):
    """Network + loss as one cell taking ``(image, label)``."""
    loss = LabelSmoothingCrossEntropy(num_classes=cfg.num_classes,
                                      smoothing=cfg.loss.label_smoothing)
    return nn.WithLossCell(net, loss)


def evaluate(cfg, net, ctx=None, dataset=None, log=print):
    """Top-1/top-5 accuracy over every evaluation sample, plus throughput."""
    dataset = dataset if dataset is not None else eval_dataset(cfg, ctx)
    net.set_train(False)
    top1 = top5 = total = 0
    start = time.time()
    for image, label in dataset.create_tuple_iterator(num_epochs=1):
        logits = net(image).asnumpy()
        labels = label.asnumpy()
        k = min(5, logits.shape[1])
        top_k = np.argsort(-logits, axis=1)[:, :k]
        top1 += int((top_k[:, 0] == labels).sum())
        top5 += int((top_k == labels[:, None]).any(axis=1).sum())
        total += len(labels)
    elapsed = max(time.time() - start, 1e-9)
    if total == 0:
        raise ValueError("the evaluation dataset is empty")
    return {"top_1_accuracy": top1 / total, "top_5_accuracy": top5 / total,
            "num_samples": total, "images_per_second": total / elapsed}


def format_metrics(metrics) -> str:
    """The model-zoo accuracy line users grep for."""
    acc = {"top_1_accuracy": metrics["top_1_accuracy"], "top_5_accuracy": metrics["top_5_accuracy"]}
    return (f"accuracy: {acc} (over {metrics['num_samples']} images, "
            f"{metrics['images_per_second']:.1f} img/s)")
