"""Image preprocessing, colour maps, heatmaps and overlays (onnxlrp.imaging): numpy and Pillow only."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from onnxlrp.errors import ImageDecodeError
from onnxlrp.inputs import images
from onnxlrp.inputs.images import Preprocessing
from onnxlrp.views import imaging


# ------------------------------------------------------------------------------------------------- colour maps
@pytest.mark.parametrize("name", imaging.colormap_names())
def test_every_colormap_is_a_256_entry_rgb_table(name):
    lut = imaging.colormap_lut(name)
    assert lut.shape == (256, 3) and lut.dtype == np.uint8


def test_bwr_maps_negative_zero_positive_to_blue_white_red():
    rgb = imaging.apply_colormap(np.array([0.0, 0.5, 1.0]), "bwr")
    assert rgb[0].tolist() == [0, 0, 255]
    assert rgb[1].tolist() == [255, 255, 255]
    assert rgb[2].tolist() == [255, 0, 0]


def test_coldnhot_is_black_at_zero_relevance():
    assert imaging.apply_colormap(np.array([0.5]), "coldnhot")[0].tolist() == [0, 0, 0]


def _centre_is_the_brightness_extreme(lut) -> bool:
    """Both ends lie on the same side of the centre's brightness (channel sum), far from it, and the brightness moves
    monotonically away from the centre's towards each end (1 of rounding allowed)."""
    brightness = lut.astype(int).sum(axis=1)
    centre = brightness[127:129].mean()
    dev = np.sign(brightness[0] - centre) * (brightness - centre)
    return bool(dev[0] > 100 and dev[255] > 100 and (np.diff(dev[:128]) <= 1).all()
                and (np.diff(dev[128:]) >= -1).all())


@pytest.mark.parametrize("name", imaging.SIGNED_COLORMAPS)
def test_signed_colormaps_tell_the_signs_apart_and_centre_zero(name):
    """Negative and positive ends have different colours, and zero relevance (the centre) is the brightest (bwr,
    seismic, france) or darkest (coldnhot) colour, both signs fading towards it; bwr and seismic are exact mirror
    images in brightness."""
    lut = imaging.colormap_lut(name).astype(int)
    assert (lut[0] != lut[255]).any()
    assert _centre_is_the_brightness_extreme(lut)
    if name in ("bwr", "seismic"):
        assert (lut.sum(axis=1) == lut.sum(axis=1)[::-1]).all()
    # the centre is the colour of zero relevance, the same from both sides
    assert np.abs(lut[127] - lut[128]).max() <= 4


def test_the_centre_check_rejects_an_unsigned_map():
    """``gray`` is not signed: its brightness rises straight through the centre."""
    assert not _centre_is_the_brightness_extreme(imaging.colormap_lut("gray"))


def test_apply_colormap_clips_out_of_range_values():
    rgb = imaging.apply_colormap(np.array([-3.0, 7.0]), "bwr")
    assert rgb[0].tolist() == [0, 0, 255] and rgb[1].tolist() == [255, 0, 0]


# ---------------------------------------------------------------------------------------------- normalisation
def test_signed_normalisation_is_symmetric_and_keeps_zero_at_zero():
    r = np.array([[-1.0, 0.0, 4.0]])
    n = imaging.normalise_signed(r)
    np.testing.assert_allclose(n, [[-0.25, 0.0, 1.0]])
    heat = imaging.heatmap_rgb(r, "bwr")
    assert heat[0, 1].tolist() == [255, 255, 255]           # zero relevance is white, not mid-range
    assert heat[0, 2].tolist() == [255, 0, 0]               # the peak is full red
    assert heat[0, 0, 2] == 255 and heat[0, 0, 0] < 255     # negative is blue-ish, a quarter of the way


def test_all_zero_relevance_gives_a_white_map_not_nan():
    heat = imaging.heatmap_rgb(np.zeros((4, 5)), "bwr")
    assert (heat == 255).all()


def test_relevance_map_sums_channels_by_layout():
    r = np.arange(2 * 3 * 4, dtype=float).reshape(2, 3, 4)
    np.testing.assert_allclose(imaging.relevance_map(r, "NCHW"), r.sum(0))
    np.testing.assert_allclose(imaging.relevance_map(r, "NHWC"), r.sum(2))
    assert imaging.relevance_map(np.ones(7), None).shape == (1, 7)
    assert imaging.relevance_map(np.ones((2, 3, 4, 5)), None).shape == (4, 5)
    # summing keeps conservation: the map holds the same total relevance
    assert imaging.relevance_map(r, "NCHW").sum() == pytest.approx(r.sum())


def test_overlay_shows_the_image_where_there_is_no_relevance_and_colour_where_it_peaks():
    picture = np.full((2, 2, 3), 255, np.uint8)
    rmap = np.array([[0.0, 1.0], [-1.0, 0.0]])
    over = imaging.overlay_rgb(picture, rmap, "bwr").astype(int)
    assert over[0, 0].tolist() == over[1, 1].tolist()       # no relevance: plain dimmed grey
    assert len(set(over[0, 0].tolist())) == 1
    assert over[0, 1, 0] > 200 and over[0, 1, 2] < 60       # red
    assert over[1, 0, 2] > 200 and over[1, 0, 0] < 60       # blue


def test_overlay_resizes_a_smaller_relevance_map_to_the_picture():
    over = imaging.overlay_rgb(np.zeros((8, 8, 3), np.uint8), np.ones((4, 4)), "bwr")
    assert over.shape == (8, 8, 3)


def test_zoom_is_nearest_neighbour_and_factor_reaches_min_side():
    assert imaging.zoom_factor((32, 32)) == 4
    assert imaging.zoom_factor((224, 224)) == 1
    a = np.arange(4, dtype=np.uint8).reshape(2, 2)[:, :, None].repeat(3, 2)
    z = imaging.zoom(a, 3)
    assert z.shape == (6, 6, 3) and (z[:3, :3] == 0).all() and (z[3:, 3:] == 3).all()


def test_grid_places_tiles_side_by_side_with_titles():
    tiles = [np.zeros((10, 20, 3), np.uint8), np.zeros((12, 30, 3), np.uint8)]
    g = imaging.grid(tiles, ["a", "a very long title that must be shortened"], gap=2, title_height=10)
    assert g.shape == (12 + 10 + 4, 20 + 30 + 3 * 2, 3)


def test_png_bytes_round_trip():
    rgb = np.random.default_rng(0).integers(0, 255, (5, 6, 3), dtype=np.uint8)
    import io
    assert (np.asarray(Image.open(io.BytesIO(imaging.png_bytes(rgb)))) == rgb).all()


# ---------------------------------------------------------------------------------------------- preprocessing
def test_defaults_come_from_a_static_nchw_shape():
    prep = images.resolve_preprocessing((None, 1, 32, 32))
    assert prep == Preprocessing(32, 32, 1, "NCHW", 1 / 255, (0.0,), (1.0,))


def test_nhwc_rgb_shape_and_dynamic_size():
    prep = images.resolve_preprocessing((None, None, None, 3))
    assert (prep.layout, prep.channels, prep.height, prep.width) == ("NHWC", 3, None, None)


def test_explicit_options_win_and_are_checked_against_the_model():
    prep = images.resolve_preprocessing((None, 3, None, None), size=(20, 30), mean=(0.5, 0.4, 0.3),
                                         std=(0.2,), scale=1.0)
    assert (prep.height, prep.width, prep.mean, prep.std, prep.scale) == (20, 30, (0.5, 0.4, 0.3), (0.2,), 1.0)
    with pytest.raises(ValueError, match=r"--size 20 30 does not match the model input \(N, 3, 32, 32\)"):
        images.resolve_preprocessing((None, 3, 32, 32), size=(20, 30))
    with pytest.raises(ValueError, match="--mean takes 1 or 3 values for a 3-channel input, got 2"):
        images.resolve_preprocessing((None, 3, 32, 32), mean=(0.1, 0.2))
    with pytest.raises(ValueError, match="--grayscale gives 1 channel but the model input"):
        images.resolve_preprocessing((None, 3, 32, 32), grayscale=True)
    with pytest.raises(ValueError, match="not an image batch"):
        images.resolve_preprocessing((None, 10))
    with pytest.raises(ValueError, match="non-zero"):
        images.resolve_preprocessing((None, 1, 8, 8), std=(0.0,))


def test_preprocess_applies_scale_then_mean_then_std_then_layout():
    pixels = np.zeros((2, 3, 3), np.uint8)
    pixels[..., 0], pixels[..., 1], pixels[..., 2] = 255, 51, 0
    img = Image.fromarray(pixels, "RGB")
    prep = Preprocessing(2, 3, 3, "NCHW", 1 / 255, (0.5, 0.0, 0.0), (0.5, 1.0, 2.0))
    x, picture = images.preprocess(img, prep)
    assert x.shape == (3, 2, 3) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, 0, 0], [(1.0 - 0.5) / 0.5, 0.2, 0.0], rtol=1e-6)
    assert picture.shape == (2, 3, 3) and picture.dtype == np.uint8
    x_nhwc, _ = images.preprocess(img, Preprocessing(2, 3, 3, "NHWC", 1 / 255, (0.0,), (1.0,)))
    assert x_nhwc.shape == (2, 3, 3) and x_nhwc[0, 0, 0] == pytest.approx(1.0)


def test_preprocess_resizes_and_converts_to_greyscale():
    img = Image.new("RGB", (10, 20), (255, 255, 255))
    x, picture = images.preprocess(img, Preprocessing(4, 5, 1, "NCHW", 1 / 255, (0.0,), (1.0,)))
    assert x.shape == (1, 4, 5) and picture.shape == (4, 5, 3)
    np.testing.assert_allclose(x, 1.0, rtol=1e-6)


def test_transparent_pixels_become_black():
    img = Image.new("RGBA", (2, 2), (255, 255, 255, 0))
    x, _ = images.preprocess(img, Preprocessing(2, 2, 1, "NCHW", 1 / 255, (0.0,), (1.0,)))
    assert (x == 0).all()


def test_load_image_refuses_garbage_and_truncated_files(tmp_path):
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"this is not an image")
    with pytest.raises(ImageDecodeError, match=r"cannot decode image '.*garbage.png': not a format Pillow can"):
        images.load_image(garbage)
    good = tmp_path / "good.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(good)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:300])
    with pytest.raises(ImageDecodeError, match="cannot decode image '.*truncated.png'"):
        images.load_image(truncated)
    assert ImageDecodeError.exit_code == 12


def test_array_picture_scales_min_max():
    pic = imaging.array_picture(np.array([[[0.0, 2.0], [1.0, 2.0]]]), "NCHW")
    assert pic.shape == (2, 2, 3) and pic[0, 0, 0] == 0 and pic[0, 1, 0] == 255
    assert imaging.array_picture(np.ones(5), None) is None


def test_format_shape():
    assert images.format_shape((None, 1, 32, 32)) == "(N, 1, 32, 32)"
    assert images.format_shape(("batch", 10)) == "(batch, 10)"
    assert images.format_shape((3,)) == "(3,)"
