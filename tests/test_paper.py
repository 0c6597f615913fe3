"""The book's paper figures (vggbook.paper) against the verified reference in ../shared/."""

import re
from pathlib import Path

import pytest

from vggbook import paper

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "vgg-paper.md"
pytestmark = pytest.mark.skipif(
    not REFERENCE.exists(), reason="no ../shared/reference beside the repo"
)


@pytest.fixture(scope="module")
def text():
    return REFERENCE.read_text()


def table_row(text, section, first_cell):
    block = text[text.index(section) :]
    row = next(line for line in block.splitlines() if line.startswith(f"| {first_cell} |"))
    return [c.strip() for c in row.strip("|").split("|")][1:]


def test_parameter_counts(text):
    for config, n in paper.PARAMS_EXACT.items():
        if config != "A-LRN":
            assert f"{config} {n:,}" in text
    counts = dict(
        re.findall(
            r"(A-LRN|[A-E]) (\d+)", text[text.index("parameters in millions") :].split(".")[0]
        )
    )
    assert {k: int(v) for k, v in counts.items()} == paper.TABLE2_PARAMS_M


@pytest.mark.parametrize(
    ("table", "section"), [(paper.TABLE3, "Table 3"), (paper.TABLE4, "Table 4")]
)
def test_tables_3_and_4(text, table, section):
    columns = ["256", "384", "256-512"]
    for config, by_scale in table.items():
        cells = table_row(text, section, config)
        for scale, (top1, top5) in by_scale.items():
            assert cells[columns.index(scale)] == f"{top1} / {top5}"
        assert sum(bool(c) for c in cells) == len(by_scale)


def test_tables_5_and_6(text):
    t5 = text[text.index("Table 5 (") :].split("\n\n")[0].replace("\n", " ")
    parts = dict(p.strip().split(" ", 1) for p in t5.split(":", 1)[1].split(";"))
    for config, rows in paper.TABLE5.items():
        numbers = [float(x) for x in re.findall(r"\d+\.\d", parts[config])]
        assert numbers == [v for pair in rows.values() for v in pair]
    t6 = text[text.index("Table 6") :].split("\n\n")[0]
    for top1, top5, test in paper.TABLE6.values():
        assert f"{top1} / {top5} / {test if test is not None else '-'}" in t6


def test_torchvision_table(text):
    for name, (acc1, acc5, params, gmacs) in paper.TORCHVISION.items():
        assert table_row(text, "torchvision's published", name) == [
            f"{acc1:.3f}",
            f"{acc5:.3f}",
            f"{params:,}",
            f"{gmacs:.3f}",
        ]


def test_recipe(text):
    assert f"batch size was set to {paper.RECIPE['batch_size']}" in text
    assert "learning rate was decreased 3 times" in text and "(74 epochs)" in text
