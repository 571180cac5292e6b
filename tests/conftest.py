"""Shared pytest fixtures."""
import pytest

import src  # noqa: F401  (must precede mindspore: sets the oneDNN env var)


@pytest.fixture(scope="session")
def demo_data_root(tmp_path_factory):
    """A folder holding all three demo datasets (seed 0), generated once per session.

    Treat it as read-only: tests that break data copy it first.
    """
    from src.datasets.demo import make_demo_data

    root = tmp_path_factory.mktemp("demo_data")
    make_demo_data(root)
    return root


@pytest.fixture(scope="session")
def demo_data(demo_data_root):
    """``{"cifar10": Path, "imagenet": Path, "coco": Path}`` of the session demo data."""
    from src.datasets.demo import KINDS

    return {kind: demo_data_root / kind for kind in KINDS}


@pytest.fixture(scope="session")
def small_cifar(tmp_path_factory, demo_data):
    """The demo CIFAR-10 cut to 64 training and 40 evaluation records (fast engine tests)."""
    root = tmp_path_factory.mktemp("small_cifar")
    for sub, name, count in (("cifar-10-batches-bin", "data_batch_1.bin", 64),
                             ("cifar-10-verify-bin", "test_batch.bin", 40)):
        (root / sub).mkdir()
        source = sorted((demo_data["cifar10"] / sub).glob("*.bin"))[0]
        (root / sub / name).write_bytes(source.read_bytes()[:3073 * count])
    return root


@pytest.fixture
def pynative_cpu():
    """CPU in PYNATIVE mode (fastest for small forwards); restored after tests that switch."""
    import mindspore as ms

    ms.set_device("CPU")
    ms.set_context(mode=ms.PYNATIVE_MODE)
    yield
    ms.set_context(mode=ms.PYNATIVE_MODE)
