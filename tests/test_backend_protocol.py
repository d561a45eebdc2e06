"""Both backends implement the declared interface (embcache/kernels/_backend.py) in full, with the same
names and parameters, and Cache uses nothing else and never branches on which backend it has."""
import ast
import inspect
import pathlib

import embcache
from embcache.kernels import cpu, gpu
from embcache.kernels._backend import Backend

PACKAGE = pathlib.Path(embcache.__file__).parent


def protocol_members() -> dict:
    """name -> the Protocol's function (None for a data member)."""
    out = {name: None for name in Backend.__annotations__}
    for name, value in vars(Backend).items():
        if name.startswith("_"):
            continue
        if isinstance(value, property):
            out[name] = None
        elif callable(value):
            out[name] = value
    return out


def used_by_cache() -> set:
    """Members ``embcache/cache.py`` reads off a backend (``self._backend.x``, ``b.x``, ``cache._backend.x``)."""
    names = set()
    for node in ast.walk(ast.parse((PACKAGE / "cache.py").read_text())):
        if isinstance(node, ast.Attribute):
            v = node.value
            if (isinstance(v, ast.Attribute) and v.attr == "_backend") or (isinstance(v, ast.Name) and v.id == "b"):
                names.add(node.attr)
    return names


def assigned_in_init(cls) -> set:
    """Attributes ``cls.__init__`` sets on ``self`` (the GPU backend's data members, without a GPU)."""
    tree = ast.parse(inspect.getsource(cls))
    init = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    out = set()
    for node in ast.walk(init):
        for target in getattr(node, "targets", []) + ([node.target] if isinstance(node, ast.AnnAssign) else []):
            for t in ast.walk(target):
                if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self":
                    out.add(t.attr)
    return out


def parameters(fn) -> list:
    params = list(inspect.signature(fn).parameters.values())
    if params and params[0].name == "self":
        params = params[1:]
    return [(p.name, p.default is inspect.Parameter.empty) for p in params]


def test_cache_uses_only_the_declared_interface():
    assert used_by_cache() - set(protocol_members()) == set()


def test_both_backends_have_every_member_with_the_protocols_parameters():
    cpu_backend = cpu.CPUBackend(num_sets=2, ways=2, dim=3, dtype="float32", policy=embcache.policies.LRU())
    gpu_members = set(dir(gpu.GPUBackend)) | assigned_in_init(gpu.GPUBackend)
    for name, fn in protocol_members().items():
        assert hasattr(cpu_backend, name), f"CPUBackend lacks {name}"
        assert name in gpu_members, f"GPUBackend lacks {name}"
        if fn is None:
            continue
        want = parameters(fn)
        for cls in (cpu.CPUBackend, gpu.GPUBackend):
            got = inspect.getattr_static(cls, name)
            got = got.__func__ if isinstance(got, (staticmethod, classmethod)) else got
            assert parameters(got) == want, f"{cls.__name__}.{name}{inspect.signature(got)} is not the protocol's"
    assert isinstance(cpu_backend, Backend)


def test_cache_never_asks_which_backend_it_has():
    """No comparison with a backend's name, no type test of it, and no hasattr or getattr on it, anywhere
    in cache.py."""
    tree = ast.parse((PACKAGE / "cache.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for side in [node.left, *node.comparators]:
                assert not (isinstance(side, ast.Attribute) and side.attr == "name" and
                            isinstance(side.value, (ast.Name, ast.Attribute))
                            and getattr(side.value, "attr", getattr(side.value, "id", "")) in ("_backend", "b")), \
                    f"cache.py line {node.lineno} compares a backend's name"
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance":
            assert "Backend" not in ast.unparse(node.args[1]), f"cache.py line {node.lineno} tests a backend's type"
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("hasattr", "getattr") and node.args:
            # asking a backend whether it has a member is asking which backend it is: declare the member instead
            target = node.args[0]
            assert not ((isinstance(target, ast.Attribute) and target.attr == "_backend") or
                        (isinstance(target, ast.Name) and target.id == "b")), \
                f"cache.py line {node.lineno} asks a backend whether it has {ast.unparse(node.args[1])}"
