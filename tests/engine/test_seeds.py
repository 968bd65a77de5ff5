"""Which output entry is explained and the relevance the walk starts from (``onnxlrp/engine/seeds.py``): positions
in a multi-axis output, class-index validation with its exact messages, the arg-max default and the two seed modes.
Written for the survivors of mutation testing (``tools/mutation_report.md``); torch-free, no model needed."""
from __future__ import annotations

import numpy as np
import pytest

from onnxlrp.engine import seeds
from onnxlrp.engine.seeds import Position
from onnxlrp.errors import MethodError, TargetError


def _boxes():
    """A detector-style output ``(2, 3, 2)`` whose flattened rows have distinct entries and different arg-maxes."""
    return np.array([[[0.1, 0.9], [0.3, -1.0], [0.2, 0.0]],
                     [[0.5, -0.2], [0.4, 0.6], [2.0, 0.7]]], np.float32)


@pytest.mark.parametrize("given, index", [((17, 5), (17, 5)), (((17, 5),), (17, 5)), (([17, 5],), (17, 5)),
                                          ((4,), (4,)), (([4],), (4,)), ((1, 2, 3), (1, 2, 3))])
def test_a_position_is_its_indices_given_apart_or_as_one_sequence(given, index):
    position = Position(*given)
    assert position.index == index and type(position.index) is tuple
    assert position == Position(*index)


@pytest.mark.parametrize("index, shape, flat", [((0, 0), (3, 2), 0), ((1, 0), (3, 2), 2), ((2, 1), (3, 2), 5),
                                                ((1, 2, 3), (2, 3, 4), 23), ((6,), (7,), 6),
                                                ((np.int64(2), np.int32(1)), (3, 2), 5)])
def test_a_position_flattens_in_row_major_order(index, shape, flat):
    got = Position(*index).flat(shape, "boxes")
    assert got == flat and type(got) is int


@pytest.mark.parametrize("index, shape, message", [
    ((1, 2, 3), (3, 2), "target position [1, 2, 3] does not fit output 'boxes', whose samples have shape (3, 2): "
                        "give 2 integer indices"),
    ((1,), (3, 2), "target position [1] does not fit output 'boxes', whose samples have shape (3, 2): "
                   "give 2 integer indices"),
    ((1, 0), (5,), "target position [1, 0] does not fit output 'boxes', whose samples have shape (5,): "
                   "give 1 integer index"),
    ((1.0, 0), (3, 2), "target position [1.0, 0] does not fit output 'boxes', whose samples have shape (3, 2): "
                       "give 2 integer indices"),
    ((1, "0"), (3, 2), "target position [1, '0'] does not fit output 'boxes', whose samples have shape (3, 2): "
                       "give 2 integer indices"),
    ((3, 0), (3, 2), "target position [3, 0] is out of range for output 'boxes', whose samples have shape (3, 2)"),
    ((0, 2), (3, 2), "target position [0, 2] is out of range for output 'boxes', whose samples have shape (3, 2)"),
    ((-1, 0), (3, 2), "target position [-1, 0] is out of range for output 'boxes', whose samples have shape (3, 2)"),
    ((0, -1), (3, 2), "target position [0, -1] is out of range for output 'boxes', whose samples have shape (3, 2)"),
])
def test_a_position_that_does_not_fit_is_refused_by_name(index, shape, message):
    with pytest.raises(TargetError) as e:
        Position(*index).flat(shape, "boxes")
    assert str(e.value) == message


@pytest.mark.parametrize("value, expected", [(2, [2, 2, 2]), (np.uint8(4), [4, 4, 4]), ([0, 4, 1], [0, 4, 1]),
                                             (np.array([3, 0, 2], np.uint16), [3, 0, 2]), ((1, 2, 3), [1, 2, 3])])
def test_class_indices_are_one_int64_per_sample(value, expected):
    got = seeds.class_indices(value, 3, 5, "y", "target")
    assert got.dtype == np.int64 and got.shape == (3,) and got.tolist() == expected


@pytest.mark.parametrize("value, message", [
    (1.5, "target must be an int or one int per sample; got 1.5"),
    (True, "target must be an int or one int per sample; got True"),
    ([[1, 2, 3]], "target must be an int or one int per sample; got [[1, 2, 3]]"),
    (np.zeros((2, 3), np.int64), "target must be an int or one int per sample; got array([[0, 0, 0], [0, 0, 0]])"),
    (np.arange(40).reshape(1, 40), "target must be an int or one int per sample; got array([[ 0, 1, 2, 3, 4, 5, 6, 7, "
                                   "8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 2"),  # one line, cut at 80
    ([1, 2], "target has 2 entries but the batch has 3 samples"),
    ([1, 2, 3, 4], "target has 4 entries but the batch has 3 samples"),
    (5, "target 5 is out of range for output 'y' with 5 classes (valid: 0..4)"),
    ([0, -1, 7], "target -1 is out of range for output 'y' with 5 classes (valid: 0..4)"),
    ([0, 4, 7], "target 7 is out of range for output 'y' with 5 classes (valid: 0..4)"),
])
def test_class_indices_that_do_not_fit_are_refused_by_name(value, message):
    with pytest.raises(TargetError) as e:
        seeds.class_indices(value, 3, 5, "y", "target")
    assert str(e.value) == message


def test_class_indices_raise_the_error_class_and_name_the_parameter_given():
    with pytest.raises(MethodError) as e:
        seeds.class_indices(9, 2, 4, "logits", "contrast", MethodError)
    assert type(e.value) is MethodError
    assert str(e.value) == "contrast 9 is out of range for output 'logits' with 4 classes (valid: 0..3)"
    with pytest.raises(MethodError, match="^contrast must be an int"):
        seeds.class_indices(0.5, 2, 4, "logits", "contrast", MethodError)


def test_without_a_target_each_sample_explains_its_arg_max_over_the_flattened_output():
    got = seeds.targets(_boxes(), None, "boxes")
    assert got.tolist() == [1, 4]  # 0.9 at (0, 1); 2.0 at (2, 0)


def test_a_target_indexes_the_flattened_output():
    assert seeds.targets(_boxes(), 5, "boxes").tolist() == [5, 5]
    assert seeds.targets(_boxes(), [0, 5], "boxes").tolist() == [0, 5]
    with pytest.raises(TargetError) as e:
        seeds.targets(_boxes(), 6, "boxes")
    assert str(e.value) == "target 6 is out of range for output 'boxes' with 6 classes (valid: 0..5)"


@pytest.mark.parametrize("target, expected", [(Position(2, 1), [5, 5]), ([Position(1, 0), Position(0, 1)], [2, 1]),
                                              ((Position(2, 0), Position(1, 1)), [4, 3])])
def test_positions_are_flattened_once_or_per_sample(target, expected):
    got = seeds.targets(_boxes(), target, "boxes")
    assert got.dtype == np.int64 and got.tolist() == expected


@pytest.mark.parametrize("target", [[Position(1, 0), 3], [2, Position(0, 1)], (Position(1, 0), 3)])
def test_positions_and_class_indices_are_not_mixed(target):
    with pytest.raises(TargetError) as e:
        seeds.targets(_boxes(), target, "boxes")
    assert str(e.value) == "target mixes positions and class indices; give one kind"


def test_a_position_is_checked_against_the_output_it_names():
    with pytest.raises(TargetError) as e:
        seeds.targets(_boxes(), Position(0, 2), "boxes")
    assert str(e.value) == ("target position [0, 2] is out of range for output 'boxes', whose samples have shape "
                            "(3, 2)")
    with pytest.raises(TargetError) as e:
        seeds.targets(_boxes(), [Position(0, 0), Position(3, 0)], "boxes")
    assert str(e.value) == ("target position [3, 0] is out of range for output 'boxes', whose samples have shape "
                            "(3, 2)")
    with pytest.raises(TargetError) as e:
        seeds.targets(_boxes(), [Position(0, 0)] * 3, "boxes")  # a batch of 2
    assert str(e.value) == "target has 3 entries but the batch has 2 samples"


@pytest.mark.parametrize("mode, fill", [("logit", None), ("one_hot", 1.0)])
def test_the_seed_is_zero_but_at_each_samples_explained_entry(mode, fill):
    output = _boxes().astype(np.float64)
    got = seeds.seed(np, output, np.array([5, 2]), mode)
    expected = np.zeros_like(output)
    expected[0, 2, 1] = output[0, 2, 1] if fill is None else fill
    expected[1, 1, 0] = output[1, 1, 0] if fill is None else fill
    assert got.shape == output.shape and got.dtype == output.dtype
    assert np.array_equal(got, expected)
