"""Docs that stay true: every config key described, every link and image resolving, the README's first
code block the two commands CI and a newcomer run, and every guide reachable from the README."""

import re
from pathlib import Path

import yaml
from conftest import REPO

DOCS = [REPO / "README.md", REPO / "config" / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def schema_keys(node: dict, root: dict, path: tuple = ()) -> set[str]:
    """Every key a config may set, dotted, with <name> for a map's own keys and [] for a list's items."""
    if "$ref" in node:
        if path and path[0] == "models" and path[-1] == "train":
            return set()  # a model's train overrides: the train section's keys, described once
        node = root["definitions"][node["$ref"].rsplit("/", 1)[1]]
    keys = set()
    for name, sub in (node.get("properties") or {}).items():
        keys.add(".".join((*path, name)))
        keys |= schema_keys(sub, root, (*path, name))
    if isinstance(node.get("additionalProperties"), dict) and "properties" in node["additionalProperties"]:
        keys |= schema_keys(node["additionalProperties"], root, (*path, "<name>"))
    if isinstance(node.get("items"), dict):
        keys |= schema_keys(node["items"], root, (*path, "[]"))
    for sub in node.get("oneOf", []) + node.get("anyOf", []):
        keys |= schema_keys(sub, root, path)
    return keys


def documented_keys() -> set[str]:
    """The keys in the first column of config/README.md's tables."""
    text = (REPO / "config" / "README.md").read_text()
    return set(re.findall(r"^\| `([a-z0-9_<>.\[\]]+)` \|", text, re.M))


def test_every_config_key_is_described_in_config_readme():
    schema = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())
    keys, documented = schema_keys(schema, schema), documented_keys()
    assert len(keys) > 200
    assert sorted(keys - documented) == [], "describe these keys in config/README.md"
    assert sorted(documented - keys) == [], "config/README.md describes keys the schema does not have"


def anchors(doc: Path) -> set[str]:
    """The anchors GitHub gives a Markdown file's headings: lower case, punctuation dropped, spaces as hyphens,
    a repeated heading suffixed -1, -2, ..."""
    seen, out = {}, set()
    text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)
    for heading in re.findall(r"^#{1,6} +(.+?) *#* *$", text, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading).lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def test_every_relative_link_and_image_resolves():
    """Files and their anchors (a guide's section a link names must exist)."""
    broken = []
    for doc in DOCS:
        text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)  # code blocks hold no links
        for target in re.findall(r"!?\[[^\]]*\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            file = doc.parent / path if path else doc
            if not file.exists():
                broken.append(f"{doc.relative_to(REPO)}: {target}")
            elif anchor and file.suffix == ".md" and anchor not in anchors(file):
                broken.append(f"{doc.relative_to(REPO)}: {target} (no such heading)")
    assert broken == []


def test_the_readme_is_a_landing_page_with_the_two_commands_first():
    readme = (REPO / "README.md").read_text()
    first = re.search(r"```[a-z]*\n(.*?)```", readme, re.S).group(1)
    commands = [line.split("#", 1)[0].strip() for line in first.splitlines() if line.split("#", 1)[0].strip()]
    assert commands == ["make run", "make test"]
    assert "make test" in (REPO / ".ci" / "run").read_text()  # what CI runs is the README's test command
    assert len(readme.splitlines()) <= 200


def test_every_guide_is_reachable_from_the_readme():
    readme = (REPO / "README.md").read_text()
    linked = {Path(t).name for t in re.findall(r"\]\((docs/[^)#\s]+)", readme)}
    guides = {p.name for p in (REPO / "docs").glob("*.md")}
    assert guides and sorted(guides - linked) == []
    assert "config/README.md" in readme
