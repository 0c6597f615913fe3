"""The book's chapters as documents: parameters, stored outputs, the report's glue keys."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((ROOT / "book").glob("[0-9]*.ipynb"))
MACHINE_PATH = re.compile(r"(/work/|/tmp/|/root/|/home/[a-z]|site-packages/)")


def cells(path):
    return [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


def glued_keys(path):
    keys = set()
    for c in cells(path):
        for o in c.get("outputs", []):
            scrap = o.get("metadata", {}).get("scrapbook", {})
            if "name" in scrap:
                keys.add(scrap["name"])
    return keys


def test_there_are_chapters():
    assert [p.name[:2] for p in CHAPTERS] == ["01", "02", "03", "04", "05", "06"]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_is_parameterised_and_stored_clean(path):
    code = cells(path)
    assert sum("parameters" in c["metadata"].get("tags", []) for c in code) == 1
    assert "widgets" not in json.loads(path.read_text())["metadata"], "make outputs strips it"
    counts = [c["execution_count"] for c in code if c["source"]]
    assert None not in counts and counts == sorted(counts), "not run top to bottom"
    for c in code:
        for o in c.get("outputs", []):
            assert o["output_type"] != "error"
            text = json.dumps(o.get("text", "")) + json.dumps(
                o.get("data", {}).get("text/plain", "")
            )
            assert not MACHINE_PATH.search(text), text[:200]
            assert "FAIL " not in text


GLUE = re.compile(r"\{glue:text\}`([^`]+)`")


def test_report_takes_every_figure_and_status_from_glue():
    """Every scorecard cell past the claim is glued, "-", or text without a number; every glue
    reference names a key its chapter stored."""
    lines = (ROOT / "book" / "07_report.md").read_text().splitlines()
    glued = 0
    for i, line in enumerate(lines):
        if not line.startswith("|---"):
            continue
        for row in lines[i + 1 :]:
            if not row.startswith("|"):
                break
            for cell in [c.strip() for c in row.strip("|").split("|")][1:]:
                glued += len(GLUE.findall(cell))
                typed = re.sub(r"top-[15]", "", GLUE.sub("", cell))  # names, not figures
                assert not re.search(r"\d", typed), f"a figure typed by hand: {cell}"
    assert glued >= 40
    for ref in GLUE.findall("\n".join(lines)):
        doc, key = ref.split("::")
        assert key.split(":")[0] in glued_keys(ROOT / "book" / doc), f"{ref}: no such glue key"


def run_chapter(chapter: str, out_dir: Path, **params) -> str:
    """Execute a chapter with papermill under ``params``; its executed text (fails on error)."""
    out = out_dir / f"{chapter}.ipynb"
    args = [sys.executable, "-m", "papermill", "--cwd", str(ROOT / "book"), "-k", "python3"]
    args += [str(ROOT / "book" / f"{chapter}.ipynb"), str(out), "--log-level", "ERROR"]
    args += ["-y", json.dumps(params)]
    p = subprocess.run(args, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, f"{chapter} failed under {params}: {p.stderr[-2000:]}"
    return out.read_text()


@pytest.mark.parametrize(
    "chapter, params",
    [("01_architecture", {"torchvision_check": False}), ("02_data_augmentation", {})],
)
def test_chapter_runs_with_another_seed(tmp_path, chapter, params):
    assert "PASS" in run_chapter(chapter, tmp_path, seed=1, **params)


def test_training_chapters_chain_under_other_parameters(tmp_path):
    """Chapters 3, 4 and 5 on another seed and a small budget, each reading the runs the
    previous one wrote in a directory of its own (as with runs trained elsewhere)."""
    runs = tmp_path / "runs"
    text = run_chapter(
        "03_training",
        tmp_path,
        seed=1,
        epochs=3,
        limit_train=4000,
        init="glorot",
        run_dir=str(runs / "A"),
        min_val_top1=50.0,
    )
    assert "PASS" in text and "seed 1" in text
    run_chapter(
        "04_init_transfer",
        tmp_path,
        seeds=[1],
        epochs=1,
        limit_train=1000,
        configs=["D"],
        schemes=["glorot", "transfer"],
        signal_configs=["D"],
        net_a_run=str(runs / "A"),
        runs_root=str(runs),
    )
    assert {p.name for p in (runs / "tiny" / "init").iterdir()} == {
        "D-glorot-seed1",
        "D-transfer-seed1",
    }
    text = run_chapter(
        "05_evaluation",
        tmp_path,
        seed=1,
        configs=["D"],
        protocols=["single", "dense"],
        runs_root=str(runs),
    )
    assert "PASS" in text


def test_a_chapter_given_a_missing_run_says_so_in_its_first_cells(tmp_path):
    """One line naming the parameter and what produces the run, before any work is done."""
    out = tmp_path / "05.ipynb"
    args = [sys.executable, "-m", "papermill", "--cwd", str(ROOT / "book"), "-k", "python3"]
    args += [str(ROOT / "book" / "05_evaluation.ipynb"), str(out), "--log-level", "ERROR"]
    args += ["-y", json.dumps({"runs_root": str(tmp_path / "nowhere")})]
    p = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert p.returncode != 0
    failed = [
        (i, o)
        for i, c in enumerate(cells(out))
        for o in c.get("outputs", [])
        if o["output_type"] == "error"
    ]
    assert len(failed) == 1 and failed[0][0] <= 2, failed
    error = failed[0][1]
    assert error["traceback"] == [
        f"RunDirError: runs_root: no trained run at {tmp_path / 'nowhere/tiny/init/D-glorot-seed0'}"
        ": chapter 4 (book/04_init_transfer.ipynb) produces it"
    ]
