"""MkDocs hooks of kvt's site (mkdocs.yml, `hooks:`).

- kvt's docstrings follow Keras' style, an `Example:` line then `>>>` lines unindented,
  which Markdown would read as nested block quotes: they become Python code blocks.
- A page links into the repository (`../results/...`) so that the link works where the
  Markdown is read, in a checkout or a repository browser. In the built site such a link
  has nothing to point at unless `repo_url` is set; then it points at the repository.
"""

import re

from markdown import Extension
from markdown.preprocessors import Preprocessor
from mkdocs.plugins import event_priority


class _Doctest(Preprocessor):
    def run(self, lines):
        out, block = [], []
        for line in lines + [""]:
            if line.lstrip().startswith(">>> ") or (block and line.lstrip().startswith("... ")):
                block.append(line.lstrip()[4:])
                continue
            if block:
                out += ["", "```python", *block, "```", ""]
                block = []
            out.append(line)
        return out[:-1]


class DoctestExtension(Extension):
    def extendMarkdown(self, md):
        md.preprocessors.register(_Doctest(md), "kvt_doctest", 29)  # before fenced code


@event_priority(100)  # before mkdocstrings reads the extensions
def on_config(config):
    config.markdown_extensions.append(DoctestExtension())
    return config


def on_page_markdown(markdown, page, config, files):
    repo = (config.repo_url or "").rstrip("/")
    if not repo:
        return markdown
    return re.sub(r"\]\(\.\./(?!docs/)([^)]+)\)", rf"]({repo}/tree/HEAD/\1)", markdown)
