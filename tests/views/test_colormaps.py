"""The colour maps of ``--cmap``: matplotlib's (jet, hot, coolwarm, seismic_mpl, viridis, inferno, magma, plasma,
gray, bwr) equal matplotlib's own tables within one 8-bit step; the command line lists every map and refuses other
names."""
from __future__ import annotations

import numpy as np
import pytest

from onnxlrp.cli import args as cli_args
from onnxlrp.cli import main
from onnxlrp.views import imaging
from tests.helpers.compare import assert_close

#: our name -> matplotlib's
MATPLOTLIB_NAMES = {"jet": "jet", "hot": "hot", "coolwarm": "coolwarm", "seismic_mpl": "seismic", "viridis": "viridis",
                    "inferno": "inferno", "magma": "magma", "plasma": "plasma", "gray": "gray", "grey": "gray",
                    "bwr": "bwr"}


@pytest.mark.parametrize("name", sorted(MATPLOTLIB_NAMES))
def test_matplotlib_maps_equal_matplotlib(name):
    """matplotlib draws ``cmap(x)`` from its 256-entry table, entry ``floor(256 x)``; at ``x = i / 255`` that is
    entry i, the value our stops interpolate to. Both are compared in 8 bits: at most 1 step apart (our stops are
    matplotlib's values rounded to 8 bits, then interpolated and rounded again)."""
    matplotlib = pytest.importorskip("matplotlib")
    x = np.arange(256) / 255.0
    expected = np.round(matplotlib.colormaps[MATPLOTLIB_NAMES[name]](x)[:, :3] * 255.0)
    assert_close(imaging.apply_colormap(x, name).astype(np.float64), expected, rtol=0, atol=1.0, label=name)


def test_every_name_is_a_command_line_choice_and_the_help_lists_it():
    assert tuple(imaging.colormap_names()) == cli_args.COLORMAPS
    help_text = " ".join(cli_args.build_parser()._subparsers._group_actions[0].choices["explain"]
                         .format_help().split())
    for name in imaging.colormap_names():
        assert name in help_text


def test_an_unknown_colour_map_is_one_error_line_with_exit_2(capsys, tmp_path):
    assert main(["explain", str(tmp_path / "m.onnx"), str(tmp_path / "x.png"), "--cmap", "rainbow"]) == 2
    err_lines = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(err_lines) == 1 and "invalid choice: 'rainbow'" in err_lines[0] and "'jet'" in err_lines[0]


def test_the_api_refuses_an_unknown_name_listing_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown colour map 'rainbow'; colour maps are: bwr, .*jet"):
        imaging.apply_colormap(np.zeros(3), "rainbow")
