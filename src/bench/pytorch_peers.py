"""The zoo's four networks written in PyTorch, for ``benchmark.py --peer=pytorch``.

Each peer is the same network as the zoo's, layer for layer: the same
trainable tensors in the same order (``tests/test_benchmark.py`` checks the
shapes, and that copied weights give the zoo's outputs), MindSpore's 'same'
padding rule, the same loss (label-smoothed cross entropy; for YOLOv3-Tiny the
zoo's GIoU + objectness-with-ignore + class BCE loss over the same target
columns) and the same optimizer (momentum SGD, weight decay on weights only).
It is a measuring stick, so torch is imported lazily and is a test-only
dependency: nothing in training or deployment uses this module.
"""
from src.bench import TORCH_MISSING


def _torch():
    try:
        import torch  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise SystemExit(TORCH_MISSING) from None
    return torch


def same_padding(size: int, kernel: int, stride: int):
    """MindSpore's 'same' padding (before, after) along one axis: the extra pixel goes after."""
    out = -(-size // stride)
    needed = max(0, (out - 1) * stride + kernel - size)
    return needed // 2, needed - needed // 2


def build_peer(name: str, num_classes: int, image_size, net_options=None):
    """The PyTorch network of zoo model ``name`` (train mode)."""
    torch = _torch()
    nn, functional = torch.nn, torch.nn.functional
    net_options = dict(net_options or {})

    class SamePad(nn.Module):
        """Pads like MindSpore's pad_mode='same' for a (kernel, stride) window."""

        def __init__(self, kernel, stride, value=0.0, replicate=False):
            super().__init__()
            self.kernel, self.stride, self.value, self.replicate = kernel, stride, value, replicate

        def forward(self, x):
            top, bottom = same_padding(x.shape[2], self.kernel, self.stride)
            left, right = same_padding(x.shape[3], self.kernel, self.stride)
            if not top + bottom + left + right:
                return x
            if self.replicate:  # a max pool's padding: never the maximum
                return functional.pad(x, (left, right, top, bottom), mode="replicate")
            return functional.pad(x, (left, right, top, bottom), value=self.value)

    def conv_bn_act(cin, cout, kernel, stride=1, *, pad_mode="same", groups=1, bias=False,
                    batch_norm=True, eps=1e-5, activation=None):
        layers = []
        if pad_mode == "same" and stride > 1:  # the split depends on the input size
            layers.append(SamePad(kernel, stride))
            padding = 0
        elif pad_mode == "same":  # stride 1, odd kernel: symmetric
            padding = kernel // 2
        else:
            padding = kernel // 2 if pad_mode == "pad" else 0
        layers.append(nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=bias))
        if batch_norm:
            layers.append(nn.BatchNorm2d(cout, eps=eps, momentum=0.1))  # MindSpore's 0.9
        if activation is not None:
            layers.append(activation)
        return layers

    if name == "tinydarknet":
        from src.tinydarknet.net import LAYOUT, POOL  # pylint: disable=import-outside-toplevel
        alpha = net_options.get("leaky_alpha", 0.2)
        layers, cin = [], 3
        for item in LAYOUT:
            if item == POOL:
                layers += [SamePad(2, 2, replicate=True), nn.MaxPool2d(2, 2)]
                continue
            cout, kernel = item
            cout = num_classes if cout is None else cout
            layers += conv_bn_act(cin, cout, kernel, pad_mode="pad" if kernel == 3 else "same",
                                  eps=1e-3, activation=nn.LeakyReLU(alpha))
            cin = cout
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        return nn.Sequential(*layers)

    if name == "mobilenetv1":
        from src.mobilenetv1.net import SEPARABLE_LAYOUT, STEM_CHANNELS  # pylint: disable=import-outside-toplevel
        layers = conv_bn_act(3, STEM_CHANNELS, 3, 2, activation=nn.ReLU6())
        cin = STEM_CHANNELS
        for cout, stride in SEPARABLE_LAYOUT:
            layers += conv_bn_act(cin, cin, 3, stride, groups=cin, activation=nn.ReLU6())
            layers += conv_bn_act(cin, cout, 1, activation=nn.ReLU6())
            cin = cout
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes)]
        return nn.Sequential(*layers)

    if name == "vgg16":
        from src.vgg16.net import DOWNSAMPLE, HIDDEN, LAYOUT, POOL  # pylint: disable=import-outside-toplevel
        batch_norm = net_options.get("batch_norm", False)
        bias = net_options.get("has_bias", False)
        pad_mode = net_options.get("pad_mode", "pad")
        dropout = net_options.get("dropout", 0.5)
        layers, cin = [], 3
        for item in LAYOUT:
            if item == POOL:
                layers.append(nn.MaxPool2d(2, 2))
                continue
            layers += conv_bn_act(cin, item, 3, pad_mode=pad_mode, bias=bias,
                                  batch_norm=batch_norm, activation=nn.ReLU())
            cin = item
        flat = cin * (image_size[0] // DOWNSAMPLE) * (image_size[1] // DOWNSAMPLE)

        def drop():
            return nn.Dropout(dropout) if dropout > 0 else nn.Identity()

        layers += [nn.Flatten(), nn.Linear(flat, HIDDEN), nn.ReLU(), drop(),
                   nn.Linear(HIDDEN, HIDDEN), nn.ReLU(), drop(), nn.Linear(HIDDEN, num_classes)]
        return nn.Sequential(*layers)

    if name == "yolov3_tiny":
        from src.yolov3_tiny.net import ANCHORS_PER_SCALE, BOX_ATTRIBUTES  # pylint: disable=import-outside-toplevel
        alpha = net_options.get("leaky_alpha", 0.1)

        def block(cin, cout, kernel):
            return nn.Sequential(*conv_bn_act(cin, cout, kernel, activation=nn.LeakyReLU(alpha)))

        class YOLOv3Tiny(nn.Module):
            def __init__(self):
                super().__init__()
                channels = ((3, 16, 3), (16, 32, 3), (32, 64, 3), (64, 128, 3), (128, 256, 3),
                            (256, 512, 3), (512, 1024, 3), (1024, 256, 1), (256, 512, 3),
                            (256, 128, 1), (384, 256, 3))
                self.convs = nn.ModuleList(block(*c) for c in channels)
                self.pool_keep_size = nn.Sequential(SamePad(2, 1, replicate=True),
                                                    nn.MaxPool2d(2, 1))
                out = ANCHORS_PER_SCALE * (num_classes + BOX_ATTRIBUTES)
                self.head_stride32 = nn.Conv2d(512, out, 1)
                self.head_stride16 = nn.Conv2d(256, out, 1)

            def forward(self, x):
                c = self.convs
                for i in range(4):
                    x = functional.max_pool2d(c[i](x), 2, 2)
                route = c[4](x)
                x = self.pool_keep_size(c[5](functional.max_pool2d(route, 2, 2)))
                neck = c[7](c[6](x))
                up = functional.interpolate(c[9](neck), size=route.shape[2:], mode="nearest")
                out16 = c[10](torch.cat((up, route), 1))
                return self.head_stride32(c[8](neck)), self.head_stride16(out16)

        return YOLOv3Tiny()
    raise ValueError(f"no PyTorch peer for model {name!r}")


def zoo_tensors(zoo_net):
    """The zoo network's trainable parameters, then its BatchNorm statistics, as numpy arrays."""
    params = list(zoo_net.get_parameters())
    return ([p.asnumpy() for p in params if p.requires_grad],
            [p.asnumpy() for p in params if not p.requires_grad
             and p.name.endswith(("moving_mean", "moving_variance"))])


def copy_zoo_weights(peer, tensors) -> None:
    """Load :func:`zoo_tensors` (or a zoo network) into ``peer``, in order."""
    torch = _torch()
    trainable, statistics = tensors if isinstance(tensors, tuple) else zoo_tensors(tensors)
    targets = list(peer.parameters())
    buffers = [b for n, b in peer.named_buffers() if n.endswith(("running_mean", "running_var"))]
    if [p.shape for p in trainable] != [tuple(t.shape) for t in targets] or \
            [p.shape for p in statistics] != [tuple(b.shape) for b in buffers]:
        raise ValueError("the PyTorch peer's tensors differ from the zoo network's")
    with torch.no_grad():
        for source, target in zip(trainable + statistics, targets + buffers):
            target.copy_(torch.from_numpy(source))


def decode_heads(outputs, input_hw, detection, num_classes: int):
    """``(pred (N,H,W,A,5+C), box xywh (N,H,W,A,4))`` per raw head, as the zoo's HeadDecoder."""
    torch = _torch()
    from src.yolov3_tiny.loss import GRID_SENSITIVITY, MAX_LOG_SIZE  # pylint: disable=import-outside-toplevel
    anchors = torch.tensor(detection.anchors, dtype=torch.float32).reshape(-1, 2)
    input_h, input_w = input_hw
    decoded = []
    for raw, mask, (scale, offset) in zip(outputs, detection.anchor_masks, GRID_SENSITIVITY):
        n, _, h, w = raw.shape
        pred = raw.reshape(n, len(mask), 5 + num_classes, h, w).permute(0, 3, 4, 1, 2)
        layer_anchors = anchors[list(mask)]
        grid_x = torch.arange(w, dtype=torch.float32).reshape(1, 1, w, 1)
        grid_y = torch.arange(h, dtype=torch.float32).reshape(1, h, 1, 1)
        shifted = torch.sigmoid(pred[..., :2]) * scale - offset
        box = torch.stack((
            (shifted[..., 0] + grid_x) / w, (shifted[..., 1] + grid_y) / h,
            torch.exp(pred[..., 2].clamp(max=MAX_LOG_SIZE)) * layer_anchors[:, 0] / input_w,
            torch.exp(pred[..., 3].clamp(max=MAX_LOG_SIZE)) * layer_anchors[:, 1] / input_h), -1)
        decoded.append((pred, box))
    return decoded


def _corners(boxes):
    return _torch().cat((boxes[..., :2] - boxes[..., 2:4] / 2,
                         boxes[..., :2] + boxes[..., 2:4] / 2), -1)


def yolo_loss(outputs, y_true, gt_boxes, input_hw, detection, num_classes: int):
    """The zoo's YOLOv3-Tiny loss (src/yolov3_tiny/loss.py) in PyTorch, stride 32 first."""
    torch = _torch()
    from src.yolov3_tiny.loss import EPSILON  # pylint: disable=import-outside-toplevel
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    total = 0.0
    for index, ((pred, box), target, gt) in enumerate(zip(
            decode_heads(outputs, input_hw, detection, num_classes), y_true, gt_boxes)):
        n = pred.shape[0]
        object_mask = target[..., 4:5]
        gt = gt.reshape(n, 1, 1, 1, -1, 4)
        a, b = _corners(box.unsqueeze(-2)), _corners(gt)
        overlap = (torch.minimum(a[..., 2:], b[..., 2:]) - torch.maximum(a[..., :2], b[..., :2])).relu()
        inter = overlap[..., 0] * overlap[..., 1]
        union = box[..., None, 2] * box[..., None, 3] + gt[..., 2] * gt[..., 3] - inter
        with torch.no_grad():
            ignore = ((inter / (union + EPSILON)).amax(-1, keepdim=True)
                      < detection.ignore_threshold).float()
        conf = bce(pred[..., 4:5], object_mask, reduction="none")
        conf_loss = (object_mask * conf + (1 - object_mask) * conf * ignore).sum()
        class_loss = (object_mask * bce(pred[..., 5:], target[..., 5:], reduction="none")).sum()
        p, t = _corners(box), _corners(target[..., :4])
        area_p = (p[..., 2:3] - p[..., 0:1]) * (p[..., 3:4] - p[..., 1:2])
        area_t = (t[..., 2:3] - t[..., 0:1]) * (t[..., 3:4] - t[..., 1:2])
        ov = (torch.minimum(p[..., 2:], t[..., 2:]) - torch.maximum(p[..., :2], t[..., :2])).relu()
        inter_pt = ov[..., 0:1] * ov[..., 1:2]
        union_pt = area_p + area_t - inter_pt + EPSILON
        enclose = torch.maximum(p[..., 2:], t[..., 2:]) - torch.minimum(p[..., :2], t[..., :2])
        enclose_area = enclose[..., 0:1] * enclose[..., 1:2] + EPSILON
        giou = (inter_pt / union_pt - (enclose_area - union_pt) / enclose_area).clamp(-1, 1)
        box_loss = (object_mask * (2 - target[..., 2:3] * target[..., 3:4]) * (1 - giou)).sum()
        layer = (box_loss * detection.coord_scale + conf_loss + class_loss) / n
        total = total + (layer * detection.large_scale if index == 0 else layer)
    return total


def parameter_groups(peer, weight_decay: float, decay_bn_and_bias: bool):
    """The zoo's optimizer groups (:func:`src.engine.parameter_groups`) over torch tensors."""
    params = list(peer.parameters())
    if decay_bn_and_bias:
        return [{"params": params, "weight_decay": weight_decay}]
    # Biases and BatchNorm gamma/beta are the 1-D tensors of these networks.
    decay = [p for p in params if p.dim() > 1]
    no_decay = [p for p in params if p.dim() <= 1]
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


class PeerRunner:
    """One model's PyTorch train step and batch-1 inference, fed the zoo's numpy batch.

    ``threads``: torch's intra-op threads (the zoo's own thread count); inter-op 1.
    """

    def __init__(self, cfg, threads: int, zoo_net=None):
        torch = _torch()
        self.torch = torch
        torch.set_num_threads(threads)
        self.cfg = cfg
        self.net = build_peer(cfg.model, cfg.num_classes, cfg.image_size, cfg.net)
        if zoo_net is not None:
            copy_zoo_weights(self.net, zoo_net)
        self.net.train()
        self.optimizer = torch.optim.SGD(
            parameter_groups(self.net, cfg.optimizer.weight_decay, cfg.optimizer.decay_bn_and_bias),
            lr=0.01, momentum=cfg.optimizer.momentum)
        self.detection = cfg.model == "yolov3_tiny"
        self.cross_entropy = torch.nn.CrossEntropyLoss(
            label_smoothing=0.0 if self.detection else _torch_smoothing(cfg))

    def loss(self, images, *targets):
        """The train loss of one batch (torch tensors)."""
        outputs = self.net(images)
        if self.detection:
            y_true, gt_boxes = targets[:2], targets[2:]
            return yolo_loss(outputs, y_true, gt_boxes, images.shape[2:], self.cfg.detection,
                             self.cfg.num_classes)
        return self.cross_entropy(outputs, targets[0].long())

    def train_step(self, *batch) -> float:
        """Forward, backward and update on numpy arrays; returns the loss."""
        tensors = [self.torch.from_numpy(b) for b in batch]
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss(*tensors)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def infer(self, image):
        """Eval-mode forward of a numpy image batch (YOLO: decoded, as the zoo's export)."""
        torch = self.torch
        self.net.eval()
        try:
            with torch.inference_mode():
                out = self.net(torch.from_numpy(image))
                if self.detection:
                    out = tuple(torch.cat((box, torch.sigmoid(pred[..., 4:])), -1) for pred, box
                                in decode_heads(out, image.shape[2:], self.cfg.detection,
                                                self.cfg.num_classes))
        finally:
            self.net.train()
        return out


def _torch_smoothing(cfg) -> float:
    """torch's label_smoothing giving the zoo's targets: 1-s on the label, s/(C-1) elsewhere."""
    s = cfg.loss.label_smoothing
    # torch puts s/C on every class (label: 1 - s + s/C); the zoo puts s/(C-1) off the label.
    return s * cfg.num_classes / (cfg.num_classes - 1) if s else 0.0




class PeerProcess:
    """A :class:`PeerRunner` in a child process, driven call by call from this one.

    The child gets oneDNN's ISA and OpenMP's wait policy as the user left them
    (:func:`src.cpu_env.user_environment`), not the zoo's settings for MindSpore and
    its kernels: the peer is PyTorch as a PyTorch user
    runs it. Each call blocks until the child is done, so it times like a local call.

    ``source``: ``(config path, overrides)`` for :func:`src.config.load_config`;
    ``batch``: the numpy training columns every :meth:`train_step` trains on.
    """

    def __init__(self, source, threads: int, zoo_net, batch):
        import multiprocessing  # pylint: disable=import-outside-toplevel

        from src import cpu_env  # pylint: disable=import-outside-toplevel
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        # oneDNN and OpenMP read their variables once, at first use; MindSpore's have started.
        with cpu_env.user_environment():
            self._process = context.Process(target=_serve, args=(child, source, threads),
                                            daemon=True)
            self._process.start()
        child.close()
        self._call("load", zoo_tensors(zoo_net), list(batch))

    def _call(self, *message):
        self._conn.send(message)
        reply = self._conn.recv()
        if isinstance(reply, str) and reply.startswith("error:"):
            raise SystemExit(f"error: the PyTorch peer failed: {reply[6:]}")
        return reply

    def train_step(self) -> float:
        """One train step on the batch; returns the loss."""
        return self._call("train")

    def set_image(self, image) -> None:
        """The numpy image batch :meth:`infer` runs on."""
        self._call("image", image)

    def infer(self) -> None:
        """One eval-mode forward of the image set by :meth:`set_image`."""
        self._call("infer")

    def close(self) -> None:
        """Stop the child process."""
        if self._process.is_alive():
            self._conn.send(("stop",))
            self._process.join(timeout=30)


def _serve(conn, source, threads: int) -> None:
    """The child of :class:`PeerProcess`: run commands until 'stop'."""
    from src.config import load_config  # pylint: disable=import-outside-toplevel
    runner, batch, image = None, None, None
    while True:
        command, *args = conn.recv()
        if command == "stop":
            return
        try:
            reply = None
            if command == "load":
                runner = PeerRunner(load_config(*source), threads)
                copy_zoo_weights(runner.net, tuple(args[0]))
                batch = args[1]
            elif command == "train":
                reply = runner.train_step(*batch)
            elif command == "image":
                image = args[0]
            elif command == "infer":
                runner.infer(image)
        except Exception as exc:  # pylint: disable=broad-except
            reply = f"error:{type(exc).__name__}: {exc}"
        conn.send(reply)
