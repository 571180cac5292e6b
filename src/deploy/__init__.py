"""Deployment of exported models: file conventions, pre/postprocessing, Python runner.

The pipeline (``scripts/run_infer_310.sh`` runs it end to end)::

    export.py    checkpoint -> <name>.mindir / <name>.onnx, plus <file>.json (the deploy spec)
    preprocess.py  CIFAR-10 -> one float32 CHW .bin per image; label file <stem> <class>
    inference      ascend310_infer/out/main (Ascend 310 or OpenCV DNN on CPU) or infer.py
                   -> result_Files/<stem>_<i>.bin, time_Result/test_perform_static.txt
    postprocess.py result files + label file -> top-1 / top-5

Every inference path writes the same files, so one postprocess serves them all.
"""
