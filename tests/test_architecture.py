"""The import directions of docs/architecture.md, held by an AST walk over every module of the package.

Every ``import`` and ``from ... import`` counts, those inside functions included (a lazy import is
still a dependency).  Relative imports are resolved against the module's package; ``from . import x``
counts as importing the submodule ``x`` when there is one.
"""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("embcache", "trt_plugin")


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def is_package(name: str) -> bool:
    return MODULES.get(name, pathlib.Path()).name == "__init__.py"


def imports_of(name: str) -> set[str]:
    """Every module of the project (or outside it) that module ``name`` imports, anywhere in its body."""
    tree = ast.parse(MODULES[name].read_text(), str(MODULES[name]))
    package = name if is_package(name) else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            found.add(target)
            for alias in node.names:  # from . import tiers: the submodule
                if f"{target}.{alias.name}" in MODULES:
                    found.add(f"{target}.{alias.name}")
    return found


def within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


# (importers, what they must not import, why): docs/architecture.md lists the same
RULES = [
    ("embcache.policies", ("embcache.kernels", "embcache.tiers", "embcache.cache"),
     "a policy is a score rule: it knows no backend, store or cache"),
    ("embcache.tiers", ("embcache.kernels", "embcache.cache", "embcache.policies"),
     "a tier describes its device source (embcache._source); kernels know no store"),
    ("embcache.kernels", ("embcache.tiers", "embcache.cache"),
     "kernels read a DeviceSource, never a store's internals"),
    ("embcache", ("trt_plugin",), "embcache knows nothing of the TensorRT plugin built on it"),
]
NEUTRAL = ("embcache._cuda", "embcache._source", "embcache._tuning", "embcache.layout", "embcache.errors")
for neutral in NEUTRAL:
    RULES.append((neutral, ("embcache.kernels", "embcache.tiers", "embcache.policies", "embcache.cache"),
                  "neutral ground: everything may import it, so it imports none of them"))


@pytest.mark.parametrize("importers, forbidden, why", RULES, ids=[r[0] for r in RULES])
def test_import_directions(importers, forbidden, why):
    wrong = sorted(f"{m} imports {target}" for m in MODULES if within(m, importers)
                   for target in imports_of(m) if any(within(target, f) for f in forbidden))
    assert not wrong, f"{why}: {wrong}"


def test_the_walk_sees_the_package_and_lazy_imports():
    assert {"embcache.cache", "embcache.tiers.host", "embcache.kernels.gpu", "trt_plugin.tables"} <= set(MODULES)
    assert "embcache.kernels.gpu" in imports_of("embcache.cache")  # imported inside _make_backend
    assert "embcache.tiers" in imports_of("embcache")  # from . import errors, policies, tiers


def test_the_architecture_doc_lists_every_module():
    doc = (ROOT / "docs" / "architecture.md").read_text()
    files = [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*"))
             if p.suffix in (".py", ".cu", ".cuh") and "__pycache__" not in p.parts]
    missing = [str(p.relative_to(ROOT)) for p in files if p.name != "__main__.py"
               and f" {p.name}" not in doc and f"{p.relative_to(ROOT)}" not in doc]
    assert not missing, f"docs/architecture.md does not list {missing}"


#: private names of other libraries that trt_plugin may use, each exactly: torch's C bindings of the current
#: device and (through getattr on torch._C, with a public fallback) the raw current stream, as TorchInductor's
#: generated code reads them
FOREIGN_PRIVATE = {"torch._C", "torch._C._cuda_getDevice"}


def test_trt_plugin_reaches_into_no_object_of_embcache():
    """trt_plugin uses embcache's public API: no ``obj._private`` (``cache._backend.xp`` was one)."""
    reached = []
    for name, path in MODULES.items():
        if not within(name, "trt_plugin"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__") \
                    and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")) \
                    and ast.unparse(node) not in FOREIGN_PRIVATE:
                reached.append(f"{name}:{node.lineno} {ast.unparse(node)}")
    assert not reached, reached
