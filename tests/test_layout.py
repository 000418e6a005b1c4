"""The tree tells the pipeline: one package per stage, imports only down the layers, no cycles, and the
layer picture in docs/architecture.md is the one the code has."""

import ast
import re
from pathlib import Path

from conftest import REPO

SRC = REPO / "src"
PKG = SRC / "tunejudge"
# bottom to top: a package may import from its own layer and the layers below it, never above
LAYERS = ["errors", "io", "run", "llm", "data", "models", "training", "judge", "analysis", "preflight"]
DEVKIT = REPO / "devkit" / "tunejudge_dev"  # the development kit: above the library, never in its wheel
RANK = {name: i for i, name in enumerate(LAYERS)}


def module_name(path: Path) -> tuple[str, bool]:
    parts = path.relative_to(SRC).with_suffix("").parts
    is_package = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_package else parts), is_package


def import_graph() -> dict[str, set[str]]:
    """Every module of the package -> the package's modules it imports (lazy imports included)."""
    modules = {module_name(p)[0]: p for p in PKG.rglob("*.py")}
    edges = {}
    for name, path in modules.items():
        here = name if module_name(path)[1] else name.rsplit(".", 1)[0]
        out = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = here.split(".")[: len(here.split(".")) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                if target.startswith("tunejudge"):
                    out |= {f"{target}.{a.name}" if f"{target}.{a.name}" in modules else target for a in node.names}
            elif isinstance(node, ast.Import):
                out |= {a.name for a in node.names if a.name.startswith("tunejudge")}
        edges[name] = out - {name}
    return edges


def layer(module: str) -> str:
    return module.split(".")[1] if "." in module else "tunejudge"


def package_graph(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for a, targets in edges.items():
        for b in targets:
            if layer(a) != layer(b) and layer(b) != "tunejudge":
                out.setdefault(layer(a), set()).add(layer(b))
    return out


def test_the_top_level_holds_only_stage_packages_io_and_errors():
    modules = sorted(p.name for p in PKG.glob("*.py"))
    assert modules == ["__init__.py", "errors.py", "io.py"]
    packages = sorted(p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").exists())
    assert packages == sorted(set(LAYERS) - {"errors", "io"})


def test_the_gpt2_family_is_whole_under_models_gpt2():
    gpt2 = PKG / "models" / "gpt2"
    assert {p.name for p in gpt2.glob("*.py")} >= {"model.py", "weights.py", "decode.py", "tokenizer.py", "lm.py"}
    assert (gpt2 / "kernels" / "decode.c").is_file() and (gpt2 / "kernels" / "__init__.py").is_file()
    # device choice is shared by both families and the trainer, not GPT-2's
    assert "def pick_device" in (PKG / "models" / "device.py").read_text()
    assert not any("def pick_device" in p.read_text() for p in gpt2.rglob("*.py"))


def test_imports_run_down_the_layers_only():
    edges = import_graph()
    up = sorted(f"{a} -> {b}" for a, targets in edges.items() for b in targets
                if layer(b) in RANK and RANK[layer(b)] > RANK[layer(a)])
    assert up == []


def test_no_import_cycle():
    edges = import_graph()
    index, low, stack, on, cycles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while (w := stack.pop()) != v:
                on.discard(w)
                comp.append(w)
            on.discard(v)
            if comp:
                cycles.append(sorted([v, *comp]))

    for v in list(edges):
        if v not in index:
            visit(v)
    assert cycles == []


def test_the_docs_draw_the_package_graph_the_code_has():
    """docs/architecture.md's Mermaid graph lists exactly the package-level imports there are (but those of
    errors and io), and its layer order is the one this test enforces."""
    text = (REPO / "docs" / "architecture.md").read_text()
    block = re.search(r"```mermaid\n(.*?)```", text, re.S).group(1)
    drawn = {tuple(m) for m in re.findall(r"^\s*(\w+) --> (\w+)\s*$", block, re.M)}
    actual = {(a, b) for a, targets in package_graph(import_graph()).items() for b in targets
              if b not in ("errors", "io")}  # the bottom: every package may use them, the graph leaves them out
    assert drawn == actual, f"update docs/architecture.md: missing {sorted(actual - drawn)}, stale {sorted(drawn - actual)}"
    order = re.search(r"Layers, bottom to top: (.*?)\.\n", text).group(1)
    assert [w.strip("` ") for w in order.split(" < ")] == LAYERS


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and not node.level and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
    return out


def test_the_library_never_imports_the_development_kit():
    """The scripted server, the stand-in Hub and the rehearsal live in devkit/ (tunejudge_dev): the
    library runs without them, and the kit reaches the library by absolute imports only."""
    assert not (PKG / "testing").exists() and not (PKG / "rehearsal").exists()
    assert {p.name for p in DEVKIT.iterdir() if (p / "__init__.py").exists()} == {"testing", "rehearsal"}
    up = sorted(f"{p.relative_to(REPO)}: {m}" for p in PKG.rglob("*.py") for m in _imports(p)
                if m.startswith("tunejudge_dev"))
    assert up == []
    for p in DEVKIT.rglob("*.py"):  # a relative import may not climb out of the kit
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                depth = len(p.relative_to(DEVKIT).parts)  # packages above the module, up to tunejudge_dev
                assert node.level <= depth, f"{p.relative_to(REPO)}:{node.lineno}: relative import out of the kit"


MAX_FUNCTION_LINES = 80  # where a reader loses the thread (STYLE.md); a longer one needs a reason here


def test_no_function_a_newcomer_cannot_hold():
    """Every function of the library and the development kit fits in about a screen: the trainer is
    setup / train_step / evaluate / checkpoint, the report a template over one context, and so on."""
    long = []
    for root in (PKG, DEVKIT):
        for path in root.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    n = node.end_lineno - node.lineno + 1
                    if n > MAX_FUNCTION_LINES:
                        long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name}: {n} lines")
    assert long == []
