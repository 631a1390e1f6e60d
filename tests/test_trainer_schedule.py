"""Learning-rate policies (yolo4.trainer.schedule) against darknet's ``get_current_rate`` formulas,
the cfg -> run mapping of ``from_cfg``, and the schedule's round trip through ``train_args``."""

import math

import pytest

from yolo4.errors import Yolo4Error
from yolo4.trainer.schedule import BurnInCosine, LRSchedule, from_cfg


def darknet_rate(batch_num, lr, burn_in, power, policy, steps=(), scales=(), cycle=1, mult=2, lr_min=0.0):
    """A hand port of AlexeyAB darknet ``src/network.c`` ``get_current_rate`` (CONSTANT, STEPS, SGDR)."""
    if batch_num < burn_in:
        return lr * (batch_num / burn_in) ** power
    if policy == "constant":
        return lr
    if policy == "steps":
        rate = lr
        for s, k in zip(steps, scales):
            if s > batch_num:
                return rate
            rate *= k
        return rate
    start, size = 0, cycle
    while start + size < batch_num:
        start += size
        size *= mult
    return lr_min + 0.5 * (lr - lr_min) * (1 + math.cos((batch_num - start) * math.pi / size))


def test_burn_in_power_for_every_policy():
    # darknet: lr * (batch_num / burn_in) ** power, batch_num = it + 1 (1 at the first update)
    for policy in ("cosine", "steps", "sgdr", "constant"):
        s = LRSchedule(0.01, 100, burn_in=10, power=4, policy=policy, steps=(50,), scales=(0.1,), sgdr_cycle=100)
        assert s(0) == pytest.approx(0.01 * 0.1 ** 4, rel=1e-12)
        assert s(4) == pytest.approx(0.01 * 0.5 ** 4, rel=1e-12)
        assert s(9) == pytest.approx(0.01, rel=1e-12)
    s = LRSchedule(0.01, 100, burn_in=10, power=2, policy="constant")
    assert s(4) == pytest.approx(0.01 * 0.25, rel=1e-12)             # cfg power, not a fixed 4
    assert s(10) == s(99) == 0.01


def test_steps_multiplies_the_scales_passed():
    s = LRSchedule(0.01, 100, burn_in=5, policy="steps", steps=(40, 60, 80), scales=(0.1, 0.5, 10.0))
    # batch_num = it + 1: the scale of step 40 applies from batch_num 40 (darknet: steps[i] > batch_num stops)
    assert s(38) == pytest.approx(0.01)                                # batch_num 39
    assert s(39) == pytest.approx(0.001)                               # batch_num 40
    assert s(59) == pytest.approx(0.0005)
    assert s(79) == pytest.approx(0.005)
    for it in range(100):
        assert s(it) == pytest.approx(darknet_rate(it + 1, 0.01, 5, 4, "steps", (40, 60, 80), (0.1, 0.5, 10.0)),
                                      rel=1e-12), it


def test_sgdr_restarts_and_cycle_growth():
    s = LRSchedule(0.01, 100, burn_in=0, policy="sgdr", sgdr_cycle=10, sgdr_mult=2, lr_min=0.001)
    # cycles (0, 10], (10, 30], (30, 70], (70, 150]
    assert s(9) == pytest.approx(0.001)                                # batch_num 10: the end of cycle 1
    assert s(10) == pytest.approx(0.001 + 0.5 * 0.009 * (1 + math.cos(math.pi / 20)))     # restart
    assert s(29) == pytest.approx(0.001)                               # end of the 20-step cycle
    assert s(49) == pytest.approx(0.001 + 0.5 * 0.009 * (1 + math.cos(math.pi * 20 / 40)))
    assert s(10) > s(9) and s(30) > s(29)
    for it in range(100):
        assert s(it) == pytest.approx(darknet_rate(it + 1, 0.01, 0, 4, "sgdr", cycle=10, mult=2, lr_min=0.001),
                                      rel=1e-12), it


def test_cosine_is_the_burn_in_cosine_of_before():
    s = LRSchedule(0.01, 100, burn_in=10, power=4, policy="cosine", final_ratio=0.01)
    old = BurnInCosine(0.01, 100, 10, 4, 0.01)
    assert [s(i) for i in range(100)] == [old(i) for i in range(100)]
    assert s(99) == pytest.approx(0.0001)


YOLOV4_TINY_NET = {"learning_rate": 0.00261, "burn_in": 1000, "max_batches": 2000200, "policy": "steps",
                   "steps": [1600000, 1800000], "scales": [0.1, 0.1], "momentum": 0.9, "decay": 0.0005}


def test_from_cfg_maps_darknet_steps_onto_the_run():
    # steps at 1600000 and 1800000 of max_batches 2000200 -> 80 % and 90 % of a 100-step run
    s = from_cfg(YOLOV4_TINY_NET, "steps", 0.001, 100)
    assert s.policy == "steps" and s.steps == (80, 90) and s.scales == (0.1, 0.1)
    assert s.burn_in == 10 and s.power == 4.0                          # burn_in 1000 clipped to 10 %
    assert s(78) == pytest.approx(0.001) and s(79) == pytest.approx(0.0001) and s(89) == pytest.approx(1e-5)
    # a cfg string list ("400000,450000", as a cfg may hold it) and a given burn-in
    net = dict(YOLOV4_TINY_NET, steps="400000,450000", scales=".1,.1", max_batches=500500)
    s = from_cfg(net, "steps", 0.001, 1000, burn_in=0)
    assert s.steps == (799, 899) and s.burn_in == 0
    with pytest.raises(Yolo4Error, match="steps needs the cfg's"):
        from_cfg({"learning_rate": 0.001}, "steps", 0.001, 100)
    with pytest.raises(Yolo4Error, match="2 steps and 1 scales"):
        from_cfg(dict(YOLOV4_TINY_NET, scales=[0.1]), "steps", 0.001, 100)


def test_from_cfg_sgdr_and_others():
    net = dict(YOLOV4_TINY_NET, sgdr_cycle=500050, sgdr_mult=3, learning_rate_min=0.000261)
    s = from_cfg(net, "sgdr", 0.0002, 200)
    assert (s.sgdr_cycle, s.sgdr_mult) == (50, 3)                      # a quarter of max_batches
    assert s.lr_min == pytest.approx(0.00002)                          # the cfg's ratio min / learning_rate
    # darknet's defaults: one cycle of max_batches, down to learning_rate_min 0.00001
    s = from_cfg(YOLOV4_TINY_NET, "sgdr", 0.00261, 100)
    assert s.sgdr_cycle == 100 and s.lr_min == pytest.approx(0.00001)
    assert s(99) == pytest.approx(0.00001)
    assert from_cfg(YOLOV4_TINY_NET, "constant", 0.01, 100)(50) == 0.01
    assert from_cfg(YOLOV4_TINY_NET, "cosine", 0.01, 100).final_ratio == 0.01
    with pytest.raises(Yolo4Error, match="--policy must be one of"):
        from_cfg(YOLOV4_TINY_NET, "poly", 0.01, 100)


def test_train_args_round_trip_and_old_checkpoints():
    s = LRSchedule(0.01, 100, burn_in=5, power=3.0, policy="sgdr", sgdr_cycle=7, sgdr_mult=3, lr_min=1e-4)
    back = LRSchedule.from_args(0.01, s.to_args())
    assert back == s and [back(i) for i in range(100)] == [s(i) for i in range(100)]
    # train_args of a checkpoint written before the policies existed: burn-in then cosine, as it ran
    old = {"total_iters": 60, "burn_in": 6, "power": 4.0, "final_ratio": 0.01}
    s = LRSchedule.from_args(0.01, old)
    assert s.policy == "cosine"
    assert [s(i) for i in range(60)] == [BurnInCosine(0.01, 60, 6, 4.0, 0.01)(i) for i in range(60)]
