import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from kernels.procedural import CATALOGUE, render, render_images, sample_scenes


def test_at_least_200_classes_from_shape_colour_texture():
    assert CATALOGUE.num_classes >= 200
    names = CATALOGUE.names()
    assert len(set(names)) == CATALOGUE.num_classes
    s, c, t = CATALOGUE.decompose(np.arange(CATALOGUE.num_classes))
    assert len({(a, b, d) for a, b, d in zip(s, c, t)}) == CATALOGUE.num_classes
    assert names[CATALOGUE.class_id(2, 1, 3)] == f"{CATALOGUE.colours[1]}-{CATALOGUE.textures[3]}-{CATALOGUE.shapes[2]}"


def test_deterministic_per_seed_and_different_across_seeds():
    a, la = render_images(3, 16)
    b, lb = render_images(3, 16)
    c, lc = render_images(4, 16)
    assert torch.equal(a, b) and np.array_equal(la, lb)
    assert not torch.equal(a, c)
    assert (a - c).abs().mean() > 0.05


def test_an_image_does_not_depend_on_its_batch():
    batch, labels = render_images(9, 100)
    alone, label = render_images(9, 1, start=37)
    assert torch.equal(batch[37:38], alone)
    assert labels[37] == label[0]


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32), size=st.sampled_from([16, 32, 48, 64, 96]), n=st.integers(1, 5),
       strength=st.floats(0.0, 1.0))
def test_rendered_images_are_valid(seed, size, n, strength):
    imgs, labels = render_images(seed, n, size, strength=strength)
    assert imgs.shape == (n, 3, size, size) and imgs.dtype == torch.float32
    assert float(imgs.min()) >= 0.0 and float(imgs.max()) <= 1.0
    assert torch.isfinite(imgs).all()
    assert ((0 <= labels) & (labels < CATALOGUE.num_classes)).all()


def test_labels_can_be_fixed_and_the_object_is_visible():
    labels = np.arange(0, CATALOGUE.num_classes, 7)
    params = sample_scenes(1, len(labels), labels=labels, strength=0.0)
    assert np.array_equal(params.class_id, labels)
    imgs = render(params, 64)
    # At zero nuisance strength the object's pixels take its base colour at the image centre region.
    centre = imgs[:, :, 28:36, 28:36].mean((2, 3)).numpy()
    bg = imgs[:, :, :4, :4].mean((2, 3)).numpy()
    assert np.mean(np.abs(centre - bg).sum(1) > 0.1) > 0.8


def test_same_scene_at_two_resolutions_looks_alike():
    params = sample_scenes(5, 4, strength=0.0)
    small = render(params, 32)
    big = torch.nn.functional.avg_pool2d(render(params, 64), 2)
    assert (small - big).abs().mean() < 0.03


def test_strength_out_of_range_is_refused():
    with pytest.raises(ValueError):
        sample_scenes(0, 1, strength=3.0)
