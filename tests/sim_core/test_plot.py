"""The deterrence heatmap figure (MODEL.md §9; issue: the sweep engine)."""

import struct
import subprocess
import sys

import numpy as np
import pytest

from sim_core import load_preset, run_sweep, sweep_scenario
from sim_core.plot import DPI, FIGURE_SIZE, heatmap_figure, save_heatmap


@pytest.fixture(scope="module")
def result():
    scenario = sweep_scenario(load_preset("targeted_audit"), labs=20, rounds=6)
    return run_sweep(scenario, grid=(7, 6), replicates=3, workers=1)


def png_size(path):
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n" and header[12:16] == b"IHDR"
    return struct.unpack(">II", header[16:24])


def test_png_is_written_with_the_expected_pixel_size(result, tmp_path):
    paths = save_heatmap(result, tmp_path, mark=(0.5, 0.6))
    assert [path.name for path in paths] == ["heatmap.png", "heatmap.svg"]
    expected = (round(FIGURE_SIZE[0] * DPI), round(FIGURE_SIZE[1] * DPI))
    assert png_size(tmp_path / "heatmap.png") == expected == (1440, 1120)
    assert (tmp_path / "heatmap.svg").read_text().lstrip().startswith("<?xml")


def test_command_line_writes_both_figures_with_its_data(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "sim_core", "sweep", "random_audit", "--grid", "3x3",
         "--replicates", "2", "--rounds", "3", "--mark", "0.5,0.3", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for name in ("heatmap.png", "heatmap.svg", "heatmap.csv", "sweep.json"):
        assert (tmp_path / name).stat().st_size > 0
        assert f"wrote {tmp_path / name}" in result.stdout
    assert png_size(tmp_path / "heatmap.png") == (1440, 1120)


def test_figure_has_flip_theory_mark_labels_and_caption(result):
    figure = heatmap_figure(result, mark=(0.5, 0.6))
    axes = figure.axes[0]
    labels = [line.get_label() for line in axes.get_lines()]
    assert any(label.startswith("theory: p_eff · P = g*") for label in labels)
    assert any(label.startswith("empirical flip") for label in labels)
    assert any(label.startswith("marked point: P = 0.5, p_eff = 0.6") for label in labels)
    theory = next(line for line in axes.get_lines() if line.get_label().startswith("theory"))
    x, y = theory.get_data()
    assert np.allclose(np.asarray(x) * np.asarray(y), result.marginal_gain)
    assert "P = K + φ + R" in axes.get_xlabel() and "p_eff" in axes.get_ylabel()
    assert "targeted_audit" in axes.get_title(loc="left")
    assert figure.axes[1].get_ylabel().startswith("Compliance rate")  # the colour bar
    assert axes.collections[0].get_cmap().name == "cividis"
    caption = " ".join(text.get_text() for text in figure.texts)
    assert "20 rational labs" in caption and "Q = 10 permits" in caption
    assert "3 replicates per cell" in caption


def test_figure_copes_with_no_flip_a_single_cell_and_other_metrics(result):
    nothing = result.with_metric("compliance_rate", threshold=2.0)  # no cell reaches it
    assert np.isnan(nothing.flip).all()
    heatmap_figure(nothing)
    heatmap_figure(result.with_metric("welfare", threshold=0.0), mark=(5.0, 0.1))
    single = run_sweep(
        sweep_scenario(load_preset("no_enforcement"), rounds=2),
        p_range=(0.0, 0.0),
        p_eff_range=(0.5, 0.5),
        grid=(1, 1),
        replicates=1,
        workers=1,
    )
    assert single.document()["theory"] == [None] and single.document()["stderr"] == [[None]]
    heatmap_figure(single)


def test_importing_the_plot_module_does_not_load_matplotlib():
    code = "import sys, sim_core.plot; print('matplotlib' in sys.modules)"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert output.stdout.strip() == "False"


def test_cells_start_at_zero_punishment_and_detection():
    """A grid from P = 0 and p_eff = 0 draws no negative punishment or detection."""
    zero = run_sweep(
        sweep_scenario(load_preset("targeted_audit"), labs=6, rounds=2),
        p_range=(0.0, 1.0),
        p_eff_range=(0.0, 1.0),
        grid=(5, 5),
        replicates=1,
        workers=1,
    )
    axes = heatmap_figure(zero).axes[0]
    assert axes.get_xlim()[0] == 0.0 and axes.get_ylim() == pytest.approx((0.0, 1.0))


def test_inline_svg_is_the_same_drawing_with_text_and_a_findable_point(result):
    from sim_core.plot import heatmap_svg

    document = result.document()
    svg = heatmap_svg(
        width=760,
        mark_gid="heatmap-game-point",
        p=document["p"],
        p_eff=document["p_eff"],
        values=document["values"],
        flip=document["flip"],
        marginal_gain=result.marginal_gain,
        metric="compliance_rate",
        threshold=0.9,
        title="Deterrence heatmap: compliance",
        caption="a caption",
        mark=(0.5, 0.6),
        mark_label="This class",
    )
    assert svg.startswith("<svg") and 'width="760" height="591"' in svg
    assert "<style" not in svg and "<?xml" not in svg  # nothing restyles the page around it
    assert "style=" not in svg  # a page allowing no inline style still shows every colour
    assert 'fill="#ffffff"' in svg
    assert '<g id="heatmap-game-point">' in svg
    for words in ("behaviour flip (simulated)", "Compliance rate (share of labs)", "This class"):
        assert words in svg, words
