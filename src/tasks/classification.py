"""Classification task: CIFAR-10 / ImageNet data, label-smoothed CE, top-1/top-5."""
import time

from mindspore import nn

from src.datasets.check import check_data_or_raise
from src.datasets.classification import build_classification_dataset
from src.losses import LabelSmoothingCrossEntropy
from src.metrics import top_k_counts
from src.registry import get_model_spec
from src.tasks import NON_FINITE_EVAL_FIX, Task
from src.utils.finite import NonFiniteTally

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
    """Network + loss as one cell taking ``(image, label)``: the model's, else label-smoothed CE."""
    spec = get_model_spec(cfg.model)
    if spec.loss is not None:
        return spec.loss(cfg, net)
    loss = LabelSmoothingCrossEntropy(num_classes=cfg.num_classes,
                                      smoothing=cfg.loss.label_smoothing)
    return nn.WithLossCell(net, loss)


def export_network(cfg, net):
    """The logits network (unless the model's spec names another deploy cell)."""
    return get_model_spec(cfg.model).deploy_network(cfg, net)


def evaluate(cfg, net, ctx=None, dataset=None, log=print):
    """Top-1/top-5 accuracy over every evaluation sample, plus throughput."""
    dataset = dataset if dataset is not None else eval_dataset(cfg, ctx)
    infer = export_network(cfg, net)
    infer.set_train(False)
    top1 = top5 = total = 0
    tally = NonFiniteTally("evaluation batch(es)")
    start = time.time()
    for batch, (image, label) in enumerate(dataset.create_tuple_iterator(num_epochs=1)):
        labels = label.asnumpy()
        logits = infer(image).asnumpy()
        if not tally.check(f"batch {batch}", logits):
            continue
        hits1, hits5 = top_k_counts(logits, labels)
        top1, top5, total = top1 + hits1, top5 + hits5, total + len(labels)
    elapsed = max(time.time() - start, 1e-9)
    tally.raise_if_any("no accuracy is reported", NON_FINITE_EVAL_FIX)
    if total == 0:
        raise ValueError("the evaluation dataset is empty")
    return {"top_1_accuracy": top1 / total, "top_5_accuracy": top5 / total,
            "num_samples": total, "images_per_second": total / elapsed}


def format_metrics(metrics) -> str:
    """The model-zoo accuracy line users grep for."""
    acc = {"top_1_accuracy": metrics["top_1_accuracy"], "top_5_accuracy": metrics["top_5_accuracy"]}
    return (f"accuracy: {acc} (over {metrics['num_samples']} images, "
            f"{metrics['images_per_second']:.1f} img/s)")


def score_results(cfg, flags) -> int:
    """Top-1/top-5 of deploy result files (``<stem>_0.bin`` logits) against ``--label_file``."""
    from src.deploy.postprocess_classification import (  # pylint: disable=C0415
        classification_accuracy, format_report)
    from src.errors import ConfigError  # pylint: disable=import-outside-toplevel
    if not flags.label_file:
        raise ConfigError(f"{cfg.model} is a classifier: pass --label_file=<'<image-stem> "
                          f"<class-index>' lines> (python preprocess.py writes one)")
    metrics = classification_accuracy(flags.result_path or "result_Files", flags.label_file,
                                      int(cfg.num_classes))
    print(format_report(metrics), flush=True)
    return 0


TASK = Task(name="classification", primary_metric=PRIMARY_METRIC,
            metric_names=(PRIMARY_METRIC, "top_5_accuracy"), check_inputs=check_inputs,
            train_dataset=train_dataset, eval_dataset=eval_dataset, loss_network=loss_network,
            export_network=export_network, evaluate=evaluate, format_metrics=format_metrics,
            score_results=score_results)
