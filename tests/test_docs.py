"""The README and the docs/ pages link only to files and headings that exist, and every
page of mkdocs.yml's nav is there (``mkdocs build --strict`` in .ci/run checks the built site
too; these checks need no mkdocs)."""
import glob
import os
import re
import unicodedata

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")
PAGES = sorted(glob.glob(os.path.join(DOCS, "*.md")))
FILES = [os.path.join(ROOT, "README.md")] + PAGES

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", flags=re.S | re.M)
LINK = re.compile(r"(?<!!)\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$", flags=re.M)


def prose(text: str) -> str:
  """The text without fenced code blocks, inline code and HTML comments."""
  text = FENCE.sub("", text)
  text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
  return re.sub(r"`[^`\n]*`", "", text)


def slugify(heading: str) -> str:
  """mkdocs' anchor of a heading (Python-Markdown's toc slugify on the rendered text):
  ASCII, lowercase, punctuation removed, runs of spaces and hyphens to one '-'."""
  text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)        # links -> their text
  text = re.sub(r"[`*]", "", text)                                 # code and emphasis marks
  text = re.sub(r"<[^>]+>", "", text)
  text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
  text = re.sub(r"[^\w\s-]", "", text).strip().lower()
  return re.sub(r"[-\s]+", "-", text)


def anchors(path: str) -> set:
  text = FENCE.sub("", open(path, encoding="utf-8").read())
  seen, out = {}, set()
  for _, title in HEADING.findall(text):
    slug = slugify(title)
    n = seen.get(slug, 0)
    seen[slug] = n + 1
    out.add(slug if n == 0 else f"{slug}_{n}")
  return out


def relative_links(path: str):
  for target in LINK.findall(prose(open(path, encoding="utf-8").read())):
    if re.match(r"^[a-z][a-z0-9+.-]*:", target, flags=re.I):   # http:, https:, mailto:
      continue
    yield target


def test_slugify_follows_mkdocs():
  assert slugify("Methods: DSEH and the deep baselines") == "methods-dseh-and-the-deep-baselines"
  assert slugify("Where a step's time goes") == "where-a-steps-time-goes"
  assert slugify("CNN-F convolutions on `XLA:CPU`") == "cnn-f-convolutions-on-xlacpu"
  assert slugify("Table 2: the ablations") == "table-2-the-ablations"


def test_there_are_pages_and_links():
  assert len(PAGES) >= 12
  assert sum(1 for _ in relative_links(os.path.join(ROOT, "README.md"))) >= 10


@pytest.mark.parametrize("path", FILES, ids=lambda p: os.path.relpath(p, ROOT))
def test_every_relative_link_points_at_a_file_and_heading_that_exist(path):
  broken = []
  for target in relative_links(path):
    file_part, _, anchor = target.partition("#")
    dest = (os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part
            else path)
    if not os.path.exists(dest):
      broken.append(f"{target}: no file {os.path.relpath(dest, ROOT)}")
    elif path.startswith(DOCS) and not dest.startswith(DOCS + os.sep):
      broken.append(f"{target}: outside docs/ (mkdocs --strict refuses it)")
    elif anchor and dest.endswith(".md") and anchor not in anchors(dest):
      broken.append(f"{target}: no heading #{anchor} in {os.path.relpath(dest, ROOT)}")
  assert not broken, broken


def nav_pages():
  text = open(os.path.join(ROOT, "mkdocs.yml"), encoding="utf-8").read()
  nav = text.split("\nnav:", 1)[1]
  nav = re.split(r"\n(?=\S)", nav, maxsplit=1)[0]       # up to the next top-level key
  return re.findall(r"^\s*-\s*(?:[^:\n]+:\s*)?(\S+\.md)\s*$", nav, flags=re.M)


def test_every_nav_page_exists_and_every_page_is_in_the_nav():
  pages = nav_pages()
  assert pages and len(pages) == len(set(pages))
  missing = [p for p in pages if not os.path.isfile(os.path.join(DOCS, p))]
  assert not missing, missing
  assert sorted(pages) == sorted(os.path.basename(p) for p in PAGES)


def test_readme_is_a_front_page():
  lines = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read().splitlines()
  assert len(lines) < 200
