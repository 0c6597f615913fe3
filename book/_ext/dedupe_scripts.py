"""Drop repeated <script> entries from each page.

jupyter-book 1.0.4 registers sphinx-thebe's and sphinx-togglebutton's inline scripts twice
(once with filename None, once with ''), and the second `const THEBE_JS_URL` is a JavaScript
error on every page. Entries with the same file and attributes are kept once.
"""


def _dedupe(app, pagename, templatename, context, doctree):
    seen, unique = set(), []
    for script in context.get("script_files", []):
        filename = getattr(script, "filename", script) or ""
        key = (filename, repr(sorted(getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def setup(app):
    app.connect("html-page-context", _dedupe, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
