"""The NumPy pipeline of Keras 3 runs without TensorFlow: the same sizes as tf.data, epochs a pure
function of (seed, epoch) so a resumed run sees what an uninterrupted one saw, and the CIFAR
augmentation (crop of the padded image, flip, CIFAR-100 rotation)."""

import math

import numpy as np
import pytest

from imp_keras import datasets, numpy_data


def epoch_batches(dataset, epoch, steps):
    return [dataset[epoch * steps + i] for i in range(steps)]


def test_resumed_epochs_are_the_uninterrupted_ones():
    data = numpy_data.load("cifar10", "synthetic", synthetic_examples=100, seed=3)
    steps = data.steps_per_epoch(32)
    assert steps == 3 and data.train_examples == 100 and data.eval_examples == 25
    whole = data.train(32, first_epoch=0, epochs=4)
    resumed = data.train(32, first_epoch=2, epochs=2)
    assert len(whole) == 12 and len(resumed) == 6
    for epoch in (2, 3):
        for (a, la), (b, lb) in zip(epoch_batches(whole, epoch, steps), epoch_batches(resumed, epoch - 2, steps)):
            np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(la, lb)
    first, second = whole[0], whole[steps]
    assert first[0].shape == (32, 32, 32, 3) and first[0].dtype == np.float32 and first[1].dtype == np.int32
    assert not np.array_equal(first[1], second[1]), "each epoch has its own order"
    again = numpy_data.load("cifar10", "synthetic", synthetic_examples=100, seed=3).train(32, 0, 4)
    np.testing.assert_array_equal(again[5][0], whole[5][0])


def test_an_epoch_sees_every_example_once_and_evaluation_is_in_order():
    data = numpy_data.load("mnist", "synthetic", synthetic_examples=64, seed=0, augment=False)
    seen = np.concatenate([data.train(16, first_epoch=1)[i][0] for i in range(4)])
    images = data._train[0].astype(np.float32) / 255
    assert sorted(map(bytes, seen.reshape(64, -1))) == sorted(map(bytes, images.reshape(64, -1)))
    evaluation = data.evaluation(5)
    assert len(evaluation) == 4 and len(evaluation[3][0]) == 1
    np.testing.assert_array_equal(np.concatenate([evaluation[i][1] for i in range(4)]), data._eval[1])
    with pytest.raises(IndexError):
        evaluation[4]


def test_cifar_augmentation_crops_the_padded_image_and_flips():
    info = datasets.INFO["cifar10"]
    image = np.arange(32 * 32, dtype=np.float32).reshape(1, 32, 32, 1).repeat(3, axis=-1)
    for seed in range(20):
        out = numpy_data.augment(image, info, np.random.default_rng(seed))[0, ..., 0]
        # A window of the image padded by 4 zeros, maybe mirrored: its nonzero part is a contiguous block of the original.
        rows, columns = np.nonzero(out)
        block = out[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1]
        original = image[0, ..., 0]
        found = any(
            np.array_equal(candidate[r : r + block.shape[0], c : c + block.shape[1]], block)
            for candidate in (original, original[:, ::-1])
            for r in range(32 - block.shape[0] + 1)
            for c in range(32 - block.shape[1] + 1)
        )
        assert found and block.shape[0] >= 28 and block.shape[1] >= 28


def test_cifar100_rotation_turns_a_quarter_exactly_and_fills_zeros():
    image = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    quarter = numpy_data._rotate(image, np.array([math.pi / 2], np.float32))[0, ..., 0]
    np.testing.assert_array_equal(quarter, np.rot90(image[0, ..., 0], k=1))  # out[y, x] = in[x, 3 - y]
    corner = numpy_data._rotate(np.ones((1, 32, 32, 1), np.float32), np.array([math.pi / 12], np.float32))[0, ..., 0]
    assert corner[0, 0] == 0 and corner[16, 16] == 1


def test_normalised_like_the_tf_pipeline():
    data = numpy_data.load("cifar10", "synthetic", synthetic_examples=8, augment=False)
    mean = np.asarray(datasets.INFO["cifar10"].mean, np.float32) * 255
    np.testing.assert_allclose(numpy_data._inputs(np.broadcast_to(mean, (1, 32, 32, 3)), datasets.INFO["cifar10"]), 0, atol=1e-6)
    assert data.samples(3).shape == (2, 32, 32, 3)  # a quarter of the 8 examples are the test set


def test_tensorflow_sources_are_refused():
    with pytest.raises(ValueError, match="tfds datasets and imagenet2012 need TensorFlow"):
        numpy_data.load("cifar10", "tfds")
    with pytest.raises(ValueError, match="need TensorFlow"):
        numpy_data.load("imagenet2012", "synthetic")
