"""Python deploy path: run an exported model over a data folder, write result files.

    python infer.py --model_file=outputs/tinydarknet_imagenet.onnx --data_path=/data/imagenet/val
    python infer.py --model_file=m.mindir --data_path=preprocess_Result/images --device_target=GPU

ONNX files run on onnxruntime or on OpenCV's DNN module (Winograd 3x3 convolutions:
VGG16's fastest CPU path on some CPUs). On CPU the default, ``--onnx_runtime=auto``,
times both on the file at start-up and keeps the faster; ``--onnx_runtime=onnxruntime``
or ``opencv`` pins one. MINDIR files run on MindSpore (CPU or GPU). Inputs are made with the
training code's eval transforms (:mod:`src.deploy.inputs`); outputs go to
``<output_path>/result_Files/<stem>_<i>.bin`` and the timing summary to
``<output_path>/time_Result/test_perform_static.txt``, exactly as the C++ app
writes them, so ``postprocess.py`` reads either. An input whose outputs hold NaN
or Inf stops the run after the last input: nothing of this run is kept (no result
or timing file) and the error gives the count and the first input.
"""
import argparse
import os
import sys
import time
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np

from src.deploy.common import (AUTO_ONNX_RUNTIME, NON_FINITE_RESULTS_FIX, ONNX_RUNTIMES,
                               DeployError, prepare_output_dirs, result_path, timing_line,
                               write_timing)
from src.deploy.inputs import iter_network_inputs
from src.deploy.spec import load_spec
from src.errors import ExportError
from src.utils.finite import NonFiniteTally
from src.utils.timing import interleaved_median_seconds


# Preferred export when --model_file names an export without its extension: an ONNX
# file was the fastest CPU path for every model (README, Benchmarks).
PREFERRED_FORMATS = (".onnx", ".mindir")
# --onnx_runtime=auto: timed calls per runtime, as many as fit in about this many seconds, within
# these bounds. Single batch-1 calls on a shared VM vary 2-3x (VGG16 on OpenCV: 156-237 ms), so
# one call would pick at random, and medians of 5 picked OpenCV in 3 of 4 processes where it
# was 1.2x faster.
AUTO_TIMING_SECONDS = 2.0
AUTO_CALLS = (5, 15)
# ... and onnxruntime, the runtime export.py verifies with, is kept unless another is faster by
# this factor: a near tie is not worth OpenCV's different rounding (about 1e-6 relative).
AUTO_MARGIN = 1.05


def resolve_model_file(model_file: str) -> str:
    """``model_file`` itself, or for an extension-less name the first of ``<name>.onnx``,
    ``<name>.mindir`` that exists."""
    if model_file.endswith(PREFERRED_FORMATS):
        return model_file
    for ext in PREFERRED_FORMATS:
        if os.path.isfile(model_file + ext):
            return model_file + ext
    raise DeployError(f"no {model_file}.onnx or {model_file}.mindir; export one with "
                      f"python export.py --file_format=ONNX --file_name={model_file}")


def check_onnx_runtime(model_file: str, onnx_runtime: Optional[str], device_target: str) -> None:
    """Refuse an ONNX runtime that cannot run ``model_file`` on ``device_target``."""
    if onnx_runtime and not model_file.endswith(".onnx"):
        raise DeployError(f"--onnx_runtime={onnx_runtime} runs ONNX files, but {model_file!r} "
                          f"is not one; drop --onnx_runtime, or export ONNX with "
                          f"python export.py --file_format=ONNX")
    if onnx_runtime in ("opencv", AUTO_ONNX_RUNTIME) and device_target != "CPU":
        raise DeployError(f"--onnx_runtime={onnx_runtime} runs on the CPU only, not on "
                          f"{device_target}; use --device_target=CPU, or --onnx_runtime=onnxruntime")


def fastest(calls: Dict[str, Callable[[], object]]) -> Tuple[str, Dict[str, float]]:
    """``(name of the fastest call, {name: median ms})`` of ``calls`` timed alternately.

    Two untimed calls each first (the first call allocates, and OpenCV packs its Winograd
    weights), then as many alternated calls as fit in AUTO_TIMING_SECONDS within AUTO_CALLS.
    The first of ``calls`` is the default: another wins only when AUTO_MARGIN times faster.
    """
    slowest = 0.0
    for call in calls.values():
        call()
        start = time.perf_counter()
        call()
        slowest = max(slowest, time.perf_counter() - start)
    repeats = round(min(max(AUTO_TIMING_SECONDS / max(slowest, 1e-6), AUTO_CALLS[0]), AUTO_CALLS[1]))
    medians = interleaved_median_seconds(list(calls.values()), repeats, warmup=0)
    milliseconds = {name: 1000.0 * seconds for name, seconds in zip(calls, medians)}
    default, best = next(iter(milliseconds)), min(milliseconds, key=milliseconds.get)
    return (best if milliseconds[best] * AUTO_MARGIN <= milliseconds[default] else default,
            milliseconds)


def open_fastest_onnx(model_file: str, input_shape: Sequence[int], num_threads: int = 0,
                      log=print):
    """The ONNX file on whichever CPU runtime runs an ``input_shape`` batch faster here.

    onnxruntime is the reference: a file it cannot load is an error. A file OpenCV cannot load
    runs on onnxruntime, and the log line says why.
    """
    from src.export import ExportedModel, sample_input  # pylint: disable=import-outside-toplevel
    models = {"onnxruntime": ExportedModel(model_file, num_threads=num_threads)}
    try:
        models["opencv"] = ExportedModel(model_file, num_threads=num_threads, onnx_runtime="opencv")
    except ExportError as exc:
        log(f"ONNX runtime: onnxruntime, the only one that loads it ({exc})")
        return models["onnxruntime"]
    batch = sample_input(input_shape[0], input_shape[2:], channels=input_shape[1])
    for name, model in models.items():
        try:
            model(batch)
        except Exception as exc:  # runtimes raise their own types  pylint: disable=broad-except
            # onnxruntime failing here fails on the first input too, with the runner's message.
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            log(f"ONNX runtime: onnxruntime, as {name} cannot run a {list(batch.shape)} batch "
                f"({reason})")
            return models["onnxruntime"]
    pick, milliseconds = fastest({name: (lambda model=model: model(batch))
                                  for name, model in models.items()})
    times = ", ".join(f"{name} {ms:.1f} ms" for name, ms in milliseconds.items())
    if pick == "onnxruntime":
        why = f"{times} per call; another is picked when {AUTO_MARGIN}x faster"
    else:
        speedup = milliseconds["onnxruntime"] / milliseconds[pick]
        why = f"{speedup:.2f}x faster than onnxruntime here: {times} per call"
    log(f"ONNX runtime: {pick} ({why}); --onnx_runtime=onnxruntime or opencv pins one")
    return models[pick]


def open_model(model_file: str, device_target: str = "CPU", device_id: int = 0,
               num_threads: int = 0, onnx_runtime: Optional[str] = None,
               input_shape: Optional[Sequence[int]] = None, log=print):
    """An :class:`~src.export.ExportedModel` on ``device_target`` (CPU or GPU).

    ``onnx_runtime`` runs an ONNX file: ``onnxruntime``, ``opencv``, or ``auto`` (the faster of
    the two for an ``input_shape`` batch, :func:`open_fastest_onnx`), which is the default on CPU
    when ``input_shape`` is given. Naming one for a MINDIR file is refused rather than ignored.
    """
    from src.export import ExportedModel  # pylint: disable=import-outside-toplevel
    check_onnx_runtime(model_file, onnx_runtime, device_target)
    if model_file.endswith(".onnx") and device_target == "CPU" and input_shape is not None \
            and onnx_runtime in (None, AUTO_ONNX_RUNTIME):
        return open_fastest_onnx(model_file, input_shape, num_threads, log)
    if onnx_runtime == AUTO_ONNX_RUNTIME:
        raise DeployError("--onnx_runtime=auto needs the model's input shape; name a runtime")
    if onnx_runtime == "opencv":
        return ExportedModel(model_file, num_threads=num_threads, onnx_runtime="opencv")
    if model_file.endswith(".onnx"):
        providers = ["CPUExecutionProvider"]
        if device_target == "GPU":
            import onnxruntime as ort  # pylint: disable=import-outside-toplevel
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise DeployError("this onnxruntime has no CUDA provider; install onnxruntime-gpu, "
                                  "or run the MINDIR export on GPU (--model_file=<name>.mindir)")
            providers.insert(0, "CUDAExecutionProvider")
        return ExportedModel(model_file, num_threads=num_threads, providers=providers)
    if not model_file.endswith(".mindir"):
        raise DeployError(f"{model_file!r}: the Python runner takes .onnx or .mindir files")
    from src.device import setup_device  # pylint: disable=import-outside-toplevel
    setup_device(device_target, device_id, "graph")
    return ExportedModel(model_file)


def run_inference(model_file: str, data_path: str, spec: Dict, output_path: str = ".",
                  device_target: str = "CPU", device_id: int = 0, num_threads: int = 0,
                  log=print, onnx_runtime: Optional[str] = None) -> Dict:
    """Run every input through the model; write result and timing files; return a summary."""
    if spec.get("input_shape", [1])[0] != 1 and model_file.endswith(".mindir"):
        raise DeployError(f"{model_file!r} was exported with batch {spec['input_shape'][0]}; the "
                          f"deploy path runs one image at a time: re-export with "
                          f"--export.batch_size=1")
    # One image per call (batch[None] below), so the runtime is picked on that shape.
    input_shape = [1, *spec["input_shape"][1:]] if "input_shape" in spec else None
    model = open_model(model_file, device_target, device_id, num_threads, onnx_runtime,
                       input_shape=input_shape, log=log)
    result_dir, time_dir = prepare_output_dirs(output_path)
    total_ms, count = 0.0, 0
    # NaN/Inf outputs are never written; if any input gives them, the files this run
    # wrote are removed as well, so postprocess cannot score a partial folder.
    written, tally = [], NonFiniteTally("input(s)")
    for stem, array in iter_network_inputs(spec, data_path):
        batch = array[None]
        start = time.perf_counter()
        try:
            outputs = model(batch)
        except Exception as exc:  # runtimes raise their own types; name the input instead
            raise DeployError(f"inference failed on {stem!r} (input {batch.shape}): "
                              f"{str(exc).splitlines()[0]}; was the model exported with "
                              f"batch 1 and image_size {spec['image_size']}?") from None
        total_ms += (time.perf_counter() - start) * 1000.0
        count += 1
        if not tally.check(repr(stem), *outputs):
            continue
        for index, output in enumerate(outputs):
            written.append(result_path(result_dir, stem, index))
            np.ascontiguousarray(output, dtype=np.float32).tofile(written[-1])
    if tally.count:
        for path in written:
            os.remove(path)
        tally.raise_if_any("no result files were kept", NON_FINITE_RESULTS_FIX)
    average = total_ms / max(count, 1)
    timing_file = write_timing(time_dir, average, count)
    log(timing_line(average, count))
    return {"count": count, "average_ms": average, "result_dir": result_dir,
            "timing_file": timing_file}


def main(argv: Sequence[str]) -> int:
    """Command line of the Python deploy path (``python infer.py -h``)."""
    parser = argparse.ArgumentParser(prog="infer.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_file", required=True,
                        help="exported .onnx or .mindir (batch 1); a name without extension "
                             "picks <name>.onnx (fastest on CPU), else <name>.mindir")
    parser.add_argument("--data_path", required=True,
                        help="image folder (flat or class sub-folders), CIFAR-10 root, or a "
                             "folder of preprocessed .bin files")
    parser.add_argument("--config_path", "--config", default="",
                        help="config of the model; default: the <model_file>.json export writes")
    parser.add_argument("--output_path", default=".",
                        help="where result_Files/ and time_Result/ go (default: .)")
    parser.add_argument("--device_target", default="CPU", choices=("CPU", "GPU"))
    parser.add_argument("--device_id", type=int, default=0)
    parser.add_argument("--num_threads", type=int, default=0,
                        help="threads of the ONNX runtime (0 = its default)")
    parser.add_argument("--onnx_runtime", choices=(AUTO_ONNX_RUNTIME,) + ONNX_RUNTIMES,
                        default=None,
                        help="what runs an .onnx file: auto (default on CPU: the faster of the "
                             "two, timed at start-up), onnxruntime (GPU's default) or opencv "
                             "(OpenCV DNN, CPU only; README: Benchmarks)")
    args, overrides = parser.parse_known_args(list(argv))
    args.model_file = resolve_model_file(args.model_file)
    check_onnx_runtime(args.model_file, args.onnx_runtime, args.device_target)
    spec = load_spec(args.model_file, args.config_path, overrides)
    summary = run_inference(args.model_file, args.data_path, spec, args.output_path,
                            args.device_target, args.device_id, args.num_threads,
                            onnx_runtime=args.onnx_runtime)
    print(f"wrote the results of {summary['count']} inputs to {summary['result_dir']}; "
          f"timing in {summary['timing_file']}")
    return 0


if __name__ == "__main__":
    from src.cli import run_main  # pylint: disable=import-outside-toplevel
    run_main(main, sys.argv[1:])
