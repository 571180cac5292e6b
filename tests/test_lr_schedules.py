"""Tests for src.lr_schedules against the worked examples in upstream_facts §1.3."""
import math

import numpy as np
import pytest

from src.lr_schedules import SCHEDULES, UPSTREAM_SCHEDULE_NAMES, build_lr_schedule

# The §1.3 worked examples are printed rounded to 6 decimals, so 1e-6 absolute
# covers the rounding (<= 5e-7) plus float32 error (~1e-8 at these magnitudes).
ATOL = 1e-6

# MobileNetV1 examples: lr_init 0.01, lr_end 1e-4, lr_max 0.1, warmup 1, 5 epochs, spe 2.
MOBILENET_ARGS = dict(base_lr=0.1, init_lr=0.01, end_lr=1e-4, warmup_epochs=1, epochs=5,
                      steps_per_epoch=2)
MOBILENET_EXAMPLES = {
    "steps": [.01, .055, .1, .01, .01, .01, .001, .001, .0001, .0001],
    "poly": [.01, .055, .1, .076563, .05625, .039062, .025, .014062, .00625, .001563],
    "linear_cosine": [.055, .1, .086983, .063306, .04103, .022768, .00999, .002841, .000222,
                      .000103],
    "linear": [.01, .055, .1, .087513, .075025, .062537, .05005, .037563, .025075, .012587],
}


def test_multistep_worked_example():
    lr = build_lr_schedule("exponential", base_lr=0.1, epochs=6, steps_per_epoch=2,
                           warmup_epochs=1, milestones=[2, 4])
    expected = [0.05, 0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.01, 0.001, 0.001, 0.001, 0.001]
    assert lr.dtype == np.float32
    np.testing.assert_allclose(lr, expected, rtol=0, atol=ATOL)


def test_cosine_worked_example():
    lr = build_lr_schedule("cosine_annealing", base_lr=0.1, epochs=5, steps_per_epoch=2,
                           warmup_epochs=1, t_max=5)
    expected = [0.05, 0.1, 0.090451, 0.090451, 0.065451, 0.065451, 0.034549, 0.034549,
                0.009549, 0.009549]
    np.testing.assert_allclose(lr, expected, rtol=0, atol=ATOL)


def test_cosine_t_max_zero_means_epochs():
    kwargs = dict(base_lr=0.1, epochs=5, steps_per_epoch=2, warmup_epochs=1)
    np.testing.assert_array_equal(build_lr_schedule("cosine", t_max=0, **kwargs),
                                  build_lr_schedule("cosine", t_max=5, **kwargs))


@pytest.mark.parametrize("mode", sorted(MOBILENET_EXAMPLES))
def test_mobilenet_worked_examples(mode):
    name = UPSTREAM_SCHEDULE_NAMES.get(mode, mode)
    lr = build_lr_schedule(name, **MOBILENET_ARGS)
    np.testing.assert_allclose(lr, MOBILENET_EXAMPLES[mode], rtol=0, atol=ATOL)


def test_imagenet_default_linear_example():
    # MobileNetV1 ImageNet default: linear 0 -> 0.8, no warmup, 90 x 1251 steps.
    lr = build_lr_schedule("linear", base_lr=0.8, epochs=90, steps_per_epoch=1251)
    assert lr.shape == (112590,)
    assert lr[0] == pytest.approx(0.8, abs=1e-7)
    assert lr[1251] == pytest.approx(0.791111, abs=1e-6)  # exactly 0.8 * 89/90
    # "≈ 7e-6" in the facts is 0.8 / 112590 = 7.105e-6; check the exact value
    # to float32 precision rather than the rounded one.
    assert lr[-1] == pytest.approx(0.8 / 112590, rel=1e-5)
    assert lr[-1] == pytest.approx(7e-6, abs=1.1e-7)


def test_vgg_step_equals_mobilenet_poly():
    # VGG16 "step" (lr_steps) and MobileNetV1 "poly" are the same formula.
    for kwargs in (MOBILENET_ARGS,
                   dict(base_lr=0.1, init_lr=0.01, warmup_epochs=5, epochs=70,
                        steps_per_epoch=7),
                   dict(base_lr=0.05, init_lr=0.0, warmup_epochs=0, epochs=3,
                        steps_per_epoch=4)):
        np.testing.assert_array_equal(build_lr_schedule("step", **kwargs),
                                      build_lr_schedule("poly", **kwargs))


def test_poly_is_floored_at_zero_and_ends_positive():
    lr = build_lr_schedule("poly", base_lr=0.1, epochs=4, steps_per_epoch=3)
    assert lr.min() >= 0.0
    assert lr[-1] == pytest.approx(0.1 * (1 / 12) ** 2, rel=1e-6)


def test_constant_with_and_without_warmup():
    lr = build_lr_schedule("constant", base_lr=0.2, epochs=3, steps_per_epoch=2)
    np.testing.assert_allclose(lr, np.full(6, 0.2), rtol=1e-7)
    lr = build_lr_schedule("constant", base_lr=0.2, init_lr=0.1, epochs=3, steps_per_epoch=2,
                           warmup_epochs=1)
    np.testing.assert_allclose(lr, [0.15, 0.2, 0.2, 0.2, 0.2, 0.2], rtol=1e-6)


def test_multistep_without_warmup_and_repeated_milestone():
    lr = build_lr_schedule("multistep", base_lr=1.0, epochs=4, steps_per_epoch=1,
                           milestones=[0, 2, 2], gamma=0.5)
    # Milestone 0 applies at step 0; a repeated milestone compounds (as upstream).
    np.testing.assert_allclose(lr, [0.5, 0.5, 0.125, 0.125], rtol=1e-7)


@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
def test_lengths_and_dtype(schedule):
    epochs = 150 if schedule == "cosine_sample" else 7
    lr = build_lr_schedule(schedule, base_lr=0.1, init_lr=0.01, epochs=epochs,
                           steps_per_epoch=3, warmup_epochs=2, milestones=[3, 5])
    assert lr.dtype == np.float32
    assert lr.shape == (epochs * 3,)
    assert np.all(np.isfinite(lr)) and np.all(lr >= 0)


def test_upstream_names_map_to_canonical():
    assert UPSTREAM_SCHEDULE_NAMES == {
        "exponential": "multistep", "cosine_annealing": "cosine",
        "cosine_annealing_V2": "cosine_v2", "cosine_annealing_sample": "cosine_sample",
        "step": "poly", "steps": "fraction_steps"}
    assert set(UPSTREAM_SCHEDULE_NAMES.values()) <= set(SCHEDULES)


def _args(**overrides):
    kwargs = dict(base_lr=0.1, epochs=5, steps_per_epoch=2)
    kwargs.update(overrides)
    return kwargs


@pytest.mark.parametrize("schedule, kwargs, message", [
    ("nope", _args(), "unknown lr schedule 'nope'"),
    ("cosine", _args(epochs=0), "epochs must be a positive integer"),
    ("cosine", _args(epochs=2.5), "epochs must be a positive integer"),
    ("cosine", _args(steps_per_epoch=0), "steps_per_epoch must be a positive integer"),
    ("cosine", _args(base_lr=0.0), "base_lr must be > 0"),
    ("cosine", _args(base_lr=float("nan")), "base_lr must be a finite number"),
    ("linear", _args(init_lr=-1.0), "init_lr must be >= 0"),
    ("cosine", _args(warmup_epochs=6), "warmup_epochs (6) must not exceed epochs (5)"),
    ("cosine", _args(warmup_epochs=-1), "warmup_epochs must be >= 0"),
    ("cosine", _args(t_max=-1), "t_max must be a non-negative integer"),
    ("multistep", _args(gamma=0.0), "gamma must be > 0"),
    ("multistep", _args(milestones="2,4"), "milestones must be a sequence"),
    ("multistep", _args(milestones=[1.5]), "milestones must be non-negative integer"),
    ("multistep", _args(milestones=[1, 3], warmup_epochs=2), "milestones [1] fall inside"),
    ("cosine_v2", _args(epochs=2), "cosine_v2 needs epochs >= 3"),
    ("cosine_v2", _args(epochs=3, warmup_epochs=2), "warmup to end before 2/3"),
    ("cosine_sample", _args(epochs=118), "needs epochs >= 119"),
    ("cosine_sample", _args(epochs=200, warmup_epochs=61), "warmup_epochs <= 60"),
])
def test_invalid_arguments(schedule, kwargs, message):
    with pytest.raises(ValueError) as err:
        build_lr_schedule(schedule, **kwargs)
    assert message in str(err.value)


def test_unknown_schedule_lists_choices():
    with pytest.raises(ValueError) as err:
        build_lr_schedule("cosine_annealing_v3", **_args())
    for name in ("cosine", "multistep", "linear_cosine", "cosine_annealing_V2"):
        assert name in str(err.value)


def _cos(peak, epoch, t_max, eta_min=0.0):
    return eta_min + (peak - eta_min) * (1 + math.cos(math.pi * epoch / t_max)) / 2


def test_cosine_v2_hand_computed_split_on_epoch_boundary():
    # 9 epochs x 2 steps: 18 steps, the first cosine covers i < 12 (epochs 0-5),
    # t_max 9; the second restarts from lr(epoch 5) with T = 9 // 3 = 3.
    lr = build_lr_schedule("cosine_annealing_V2", base_lr=0.1, epochs=9, steps_per_epoch=2,
                           warmup_epochs=1)
    lr1 = _cos(0.1, 5, 9)
    expected = [0.05, 0.1] + [_cos(0.1, e, 9) for e in (1, 1, 2, 2, 3, 3, 4, 4, 5, 5)] \
        + [_cos(lr1, k, 3) for k in (1, 1, 2, 2, 3, 3)]
    np.testing.assert_allclose(lr, expected, rtol=0, atol=1e-7)
    assert lr[-1] == pytest.approx(0.0, abs=1e-9)


def test_cosine_v2_split_inside_epoch_and_eta_min():
    # 5 epochs x 3 steps: 15 steps, 2/3 = 10, so step 9 (epoch 3) ends the first
    # cosine and steps 10-11 (still epoch 3) keep its value: continuous.
    eta = 0.01
    lr = build_lr_schedule("cosine_v2", base_lr=0.1, epochs=5, steps_per_epoch=3,
                           eta_min=eta)
    lr1 = _cos(0.1, 3, 5, eta)
    np.testing.assert_allclose(lr[:10], [_cos(0.1, i // 3, 5, eta) for i in range(10)],
                               rtol=0, atol=1e-7)
    np.testing.assert_allclose(lr[10:12], [lr1, lr1], rtol=0, atol=1e-7)
    # Second cosine: T = 5 // 3 = 1, so epoch 4 (k = 1) is at eta_min.
    np.testing.assert_allclose(lr[12:], [eta] * 3, rtol=0, atol=1e-7)
    # Each piece is non-increasing.
    assert np.all(np.diff(lr[:10]) <= 0) and np.all(np.diff(lr[10:]) <= 0)


def _sample_reference(base_lr, spe, warmup_epochs, epochs):
    """Step-by-step model of the sampled cosine written from its description."""
    long_epochs = epochs + 60
    ws = int(warmup_epochs * spe)
    out = []
    for i in range(long_epochs * spe):
        e = i // spe
        if 60 <= e < 180 and (e - 60) % 2 == 0:
            continue
        out.append(base_lr * (i + 1) / ws if i < ws else _cos(base_lr, e, long_epochs))
    return out


@pytest.mark.parametrize("epochs", [119, 120, 300])
def test_cosine_sample_matches_step_model(epochs):
    lr = build_lr_schedule("cosine_annealing_sample", base_lr=0.01, epochs=epochs,
                           steps_per_epoch=2, warmup_epochs=4, t_max=999)  # t_max ignored
    assert lr.shape == (epochs * 2,)
    np.testing.assert_allclose(lr, _sample_reference(0.01, 2, 4, epochs), rtol=0, atol=1e-9)


def test_cosine_sample_hand_computed_points():
    lr = build_lr_schedule("cosine_sample", base_lr=0.01, epochs=300, steps_per_epoch=1,
                           warmup_epochs=4)
    t = 360  # cosine period of the long run: epochs + 60
    assert lr[3] == pytest.approx(0.01, rel=1e-6)  # warmup reaches base_lr
    assert lr[59] == pytest.approx(_cos(0.01, 59, t), rel=1e-6)
    # Trained epoch 60 is long-run epoch 61 (60 dropped); 61 -> 63; 119 -> 179.
    assert lr[60] == pytest.approx(_cos(0.01, 61, t), rel=1e-6)
    assert lr[61] == pytest.approx(_cos(0.01, 63, t), rel=1e-6)
    assert lr[119] == pytest.approx(_cos(0.01, 179, t), rel=1e-6)
    # After the sampled stretch the offset stays 60 epochs.
    assert lr[120] == pytest.approx(_cos(0.01, 180, t), rel=1e-6)
    assert lr[299] == pytest.approx(_cos(0.01, 359, t), rel=1e-5)
    assert np.all(np.diff(lr[4:]) <= 0)  # monotonic after warmup
