"""The book's Sphinx configuration, built on a one-page book: the pages ask for nothing outside
the book, even where an executed notebook carries widget state (tqdm's progress bars do)."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
JUPYTER_BOOK = Path(sys.executable).parent / "jupyter-book"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def widget_notebook() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    model = {"model_name": "FloatProgressModel", "model_module": "@jupyter-widgets/controls"}
    nb.metadata["widgets"] = {WIDGET_STATE: {"state": {"m1": model}, "version_major": 2}}
    view = {"model_id": "m1", "version_major": 2, "version_minor": 0}
    out = nbformat.v4.new_output(
        "display_data", {"application/vnd.jupyter.widget-view+json": view, "text/plain": "10%"}
    )
    nb.cells = [
        nbformat.v4.new_markdown_cell("# A page with a progress bar and $x^2$"),
        nbformat.v4.new_code_cell("progress()", outputs=[out], execution_count=1),
    ]
    return nb


def test_pages_load_nothing_from_outside_the_book(tmp_path):
    for name in ("_config.yml", "references.bib"):
        shutil.copy(ROOT / name, tmp_path)
    shutil.copytree(ROOT / "book" / "_ext", tmp_path / "book" / "_ext")
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/page\n")
    nbformat.write(widget_notebook(), tmp_path / "book" / "page.ipynb")
    build = [str(JUPYTER_BOOK), "build", str(tmp_path), "--path-output", str(tmp_path), "-W"]
    p = subprocess.run(build, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    html = (tmp_path / "_build" / "html" / "book" / "page.html").read_text()
    assert WIDGET_STATE in html  # the widget state was rendered...
    assets = re.findall(r'<(?:script|link)\b[^>]*?(?:src|href)="([^"]+)"', html)
    assert any("mathjax" in a for a in assets)
    outside = [a for a in assets if re.match(r"(https?:)?//", a)]
    assert outside == [], f"...and yet the page loads {outside}"
