"""The torch_npu emulation and our code checked against the real torch_npu wheels, never installed, only read.

Each profile's wheel (cp310) is read from a cache folder, $VGGT_NPU_WHEEL_CACHE or ~/.cache/vggt-npu/wheels, and
downloaded there with pip when missing (once; the test skips, saying why, when the registry cannot be reached).
From the wheel: op schemas (the strings of torch_npu/lib/libtorch_npu.so), the names of torch_npu, torch_npu.npu
and torch_npu.optim (the wheel's modules, read with ast), and the documented limits (torch_npu/_op_plugin_docs.py).
"""

from __future__ import annotations

import ast
import inspect
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from tests.npu_emulation import profiles
from tests.npu_emulation.install import install_torch_npu_emulation
from tests.npu_emulation.torch_npu._schema import parse_schema

ROOT = Path(__file__).resolve().parents[1]
CACHE_ENV = "VGGT_NPU_WHEEL_CACHE"
VERSIONS = sorted(profiles.PROFILES)


def wheel_cache() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "vggt-npu" / "wheels")


def pip_download(version: str, folder: Path) -> subprocess.CompletedProcess:
    """`pip download` of the cp310 torch-npu wheel of `version` (no dependencies, binary only) into `folder`."""
    platform = profiles.PROFILES[version].platform
    return subprocess.run(
        [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.10",
            "--platform", platform, "--disable-pip-version-check", "-d", str(folder), f"torch-npu=={version}",
        ],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip


def find_wheel(folder: Path, version: str) -> Path | None:
    platform = profiles.PROFILES[version].platform
    found = sorted(folder.glob(f"torch_npu-{version}-cp310-cp310-*{platform}*.whl"))
    return found[0] if found else None


def cached_wheel(version: str) -> Path:
    """The wheel of `version` in the cache, downloaded first if missing; skips when pip cannot fetch it."""
    cache = wheel_cache()
    wheel = find_wheel(cache, version)
    if wheel is None:
        cache.mkdir(parents=True, exist_ok=True)
        result = pip_download(version, cache)
        wheel = find_wheel(cache, version)
        if wheel is None:
            pytest.skip(
                f"torch-npu {version} is not in {cache} and pip could not download it (set {CACHE_ENV} to a folder "
                f"holding the wheel): {result.stderr.strip()[-400:]}"
            )
    return wheel


@dataclass
class RealPackage:
    """What the checks read from one wheel."""

    schemas: dict[str, set[str]]  # op name (no overload) -> its schema strings
    top_names: set[str]  # torch_npu.<name>
    npu_names: set[str]  # torch_npu.npu.<name>
    optim_names: set[str]  # torch_npu.optim.<name>
    docs: str  # torch_npu/_op_plugin_docs.py


def library_schemas(library: bytes) -> dict[str, set[str]]:
    """Every operator schema string ('name(args) -> returns', NUL-terminated) in a shared library, by op name."""
    head = re.compile(rb"^([a-z_][a-z0-9_]*)\(")
    schemas: dict[str, set[str]] = {}
    arrow = library.find(b") -> ")
    while arrow != -1:
        start, end = library.rfind(b"\x00", 0, arrow) + 1, library.find(b"\x00", arrow)
        text = library[start:end]
        match = head.match(text)
        if match:
            schemas.setdefault(match.group(1).decode(), set()).add(text.decode("ascii", "replace"))
        arrow = library.find(b") -> ", end)
    return schemas


def module_names(source: str) -> set[str]:
    """Names a module's top level binds (defs, classes, assignments, imports) plus its __all__."""
    names = set()
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    names.add(target.id)
                    if target.id == "__all__" and isinstance(node.value, (ast.List, ast.Tuple)):
                        names |= {e.value for e in node.value.elts if isinstance(e, ast.Constant)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
    return names


def package_names(wheel: zipfile.ZipFile, package: str) -> set[str]:
    """The names of a package of the wheel: its __init__'s and its submodules'."""
    members = [m for m in wheel.namelist() if m.startswith(package + "/")]
    submodules = {m[len(package) + 1 :].split("/")[0].removesuffix(".py") for m in members}
    return module_names(wheel.read(f"{package}/__init__.py").decode()) | submodules


_REAL: dict[str, RealPackage] = {}


def real_package(version: str) -> RealPackage:
    """The wheel of `version`, read once per session."""
    if version not in _REAL:
        with zipfile.ZipFile(cached_wheel(version)) as wheel:
            schemas = library_schemas(wheel.read("torch_npu/lib/libtorch_npu.so"))
            _REAL[version] = RealPackage(
                schemas=schemas,
                top_names=package_names(wheel, "torch_npu") | set(schemas),  # ops are exported from torch.ops.npu
                npu_names=package_names(wheel, "torch_npu/npu"),
                optim_names=package_names(wheel, "torch_npu/optim"),
                docs=wheel.read("torch_npu/_op_plugin_docs.py").decode(),
            )
    return _REAL[version]


# op schemas ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("op", sorted(profiles.PROFILES[profiles.NEWEST].schemas))
def test_each_emulated_op_takes_the_arguments_of_the_real_schema(version, op, monkeypatch):
    real = real_package(version).schemas[op]
    assert real == {profiles.PROFILES[version].schemas[op]}
    emulation = install_torch_npu_emulation(monkeypatch, profile=version)
    assert inspect.signature(getattr(emulation, op)) == parse_schema(next(iter(real)))[1]


def test_the_2_1_profile_rejects_arguments_only_2_14_has(monkeypatch):
    emulation = install_torch_npu_emulation(monkeypatch, profile="2.1.0.post17")
    x, r = torch.ones(1, 1, 2, 4), torch.ones(1, 1, 2, 4) * 0.5
    with pytest.raises(TypeError, match="rotate"):
        emulation.npu_rotary_mul(x, r, r, "half", rotate=None)
    with pytest.raises(TypeError, match="positional"):
        emulation.npu_gelu(x, "none")  # approximate is keyword-only in every version
    q = torch.ones(1, 1, 2, 4)
    with pytest.raises(TypeError, match="sink"):
        emulation.npu_fusion_attention(q, q, q, 1, "BNSD", sink=None)


# names ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", VERSIONS)
def test_every_name_the_emulation_offers_exists_in_the_real_version(version, monkeypatch):
    real = real_package(version)
    emulation = install_torch_npu_emulation(monkeypatch, profile=version)
    offered_npu = {n for n in emulation.npu.__all__ if hasattr(emulation.npu, n)} - emulation.npu.EMULATION_ONLY
    assert offered_npu - real.npu_names == set()
    assert set(emulation.optim.__all__) - real.optim_names == set()
    assert set(emulation.__all__) - real.top_names == set()
    absent = profiles.PROFILES[version].absent_npu_names
    assert absent & real.npu_names == set()  # what the profile removes is really missing there
    assert not any(hasattr(emulation.npu, name) for name in absent)


@dataclass(frozen=True)
class Use:
    """One reach into torch_npu in our source: the attribute chain below torch_npu, and for an op call its
    positional-argument count and keyword names."""

    where: str
    chain: tuple[str, ...]
    guarded: bool
    positional: int | None = None
    keywords: tuple[str, ...] = ()


class TorchNpuUses(ast.NodeVisitor):
    """Finds torch_npu uses: `torch_npu().X` (vggt.runtime.npu's accessor, also as `npu.torch_npu()`), a module
    imported as `torch_npu`, `torch.npu.X`, and names bound to such a chain (`npu = torch_npu().npu`). A use inside
    `if hasattr(<chain>, "name"):` of that chain and name is guarded."""

    def __init__(self, where: str) -> None:
        self.where, self.uses, self.aliases, self.guards = where, [], {}, []
        self.imported = False

    def root(self, node: ast.AST) -> tuple[str, ...] | None:
        """The chain below torch_npu that `node` denotes, or None when it is no torch_npu expression."""
        if isinstance(node, ast.Call) and not node.args:
            func = node.func
            if (isinstance(func, ast.Name) and func.id == "torch_npu") or (
                isinstance(func, ast.Attribute) and func.attr == "torch_npu"
            ):
                return ()
        if isinstance(node, ast.Name):
            if node.id == "torch_npu" and self.imported:
                return ()
            return self.aliases.get(node.id)
        if isinstance(node, ast.Attribute):
            if node.attr == "npu" and isinstance(node.value, ast.Name) and node.value.id == "torch":
                return ("npu",)
            below = self.root(node.value)
            return None if below is None else (*below, node.attr)
        return None

    def visit_Import(self, node: ast.Import) -> None:
        self.imported |= any(alias.name == "torch_npu" and alias.asname is None for alias in node.names)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        saved, self.aliases = self.aliases, dict(self.aliases)
        self.generic_visit(node)
        self.aliases = saved

    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        chain = self.root(node.value)
        for target in node.targets:
            if isinstance(target, ast.Name) and chain:
                self.aliases[target.id] = chain

    def guard(self, test: ast.AST) -> tuple[str, ...] | None:
        """The chain `hasattr(<chain>, "name")` makes safe, alone or as one term of an `and`."""
        if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And):
            return next((g for g in map(self.guard, test.values) if g is not None), None)
        if (
            isinstance(test, ast.Call)
            and isinstance(test.func, ast.Name)
            and test.func.id == "hasattr"
            and len(test.args) == 2
            and isinstance(test.args[1], ast.Constant)
        ):
            base = self.root(test.args[0])
            return None if base is None else (*base, test.args[1].value)
        return None

    def visit_If(self, node: ast.If) -> None:
        self.visit(node.test)
        self.guards.append(self.guard(node.test))
        for child in node.body:
            self.visit(child)
        self.guards.pop()
        for child in node.orelse:
            self.visit(child)

    def record(self, node: ast.AST, call: ast.Call | None = None) -> bool:
        chain = self.root(node)
        if not chain:
            return False
        guarded = any(g is not None and chain[: len(g)] == g for g in self.guards)
        line = f"{self.where}:{node.lineno}"
        if call is None:
            self.uses.append(Use(line, chain, guarded))
        else:
            keywords = tuple(k.arg for k in call.keywords if k.arg is not None)
            self.uses.append(Use(line, chain, guarded, len(call.args), keywords))
        return True

    def visit_Call(self, node: ast.Call) -> None:
        if isinstance(node.func, ast.Attribute) and self.record(node.func, node):
            self.visit(node.func.value)
        else:
            self.visit(node.func)
        for child in [*node.args, *node.keywords]:
            self.visit(child)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if not self.record(node):  # the outermost attribute of a chain is the use
            self.generic_visit(node)


def patch_files(patch: str) -> Iterator[tuple[str, str, bool]]:
    """(path, added text, whether the file is new) for each Python file of a unified diff."""
    for block in re.split(r"(?m)^--- ", patch)[1:]:
        header, _, body = block.partition("\n")
        path_line, _, hunks = body.partition("\n")
        path = path_line.removeprefix("+++ b/")
        if path.endswith(".py"):
            added = "\n".join(line[1:] for line in hunks.splitlines() if line.startswith("+"))
            yield path, added, header.strip() == "/dev/null"


def torch_npu_uses() -> list[Use]:
    """Every torch_npu use in vggt/, training/ and the Python files VGGT_npu.patch adds."""
    files = [path for folder in ("vggt", "training") for path in (ROOT / folder).rglob("*.py")]
    sources = [(str(path.relative_to(ROOT)), path.read_text()) for path in files]
    for path, added, new in patch_files((ROOT / "VGGT_npu.patch").read_text()):
        if new:
            sources.append((f"VGGT_npu.patch:{path}", added))
        else:  # hunks of upstream files cannot be parsed alone: they must not reach torch_npu
            code = "\n".join(line.split("#")[0] for line in added.splitlines())
            assert not re.search(r"torch_npu|torch\.npu", code), f"VGGT_npu.patch edits {path} with torch_npu code"
    uses = []
    for where, source in sources:
        visitor = TorchNpuUses(where)
        visitor.visit(ast.parse(source))
        uses += visitor.uses
    return uses


def test_the_source_scan_finds_the_uses_we_know_of():
    """The scan itself: the fused attention call with its keywords, the guarded deterministic level, the optimizer."""
    uses = {(u.chain, u.guarded) for u in torch_npu_uses()}
    assert (("npu", "set_deterministic_level"), True) in uses
    assert (("optim", "NpuFusedAdamW"), False) in uses
    calls = [u for u in torch_npu_uses() if u.chain == ("npu_fusion_attention",)]
    assert calls and all("scale" in u.keywords for u in calls)
    assert any(u.where.startswith("VGGT_npu.patch:vggt/runtime/") for u in torch_npu_uses())


@pytest.mark.parametrize("version", VERSIONS)
def test_every_torch_npu_name_and_keyword_our_code_uses_exists_in_the_version_or_is_guarded(version):
    real = real_package(version)
    problems = []
    for use in torch_npu_uses():
        if use.guarded:
            continue
        head = use.chain[0]
        if head not in real.top_names:
            problems.append(f"{use.where}: torch_npu.{head} does not exist")
        elif head in ("npu", "optim") and len(use.chain) > 1:
            names = real.npu_names if head == "npu" else real.optim_names
            if use.chain[1] not in names:
                problems.append(f"{use.where}: torch_npu.{head}.{use.chain[1]} does not exist")
        elif head in real.schemas and use.positional is not None:
            (schema,) = real.schemas[head]
            params = parse_schema(schema)[1].parameters.values()
            positional = [p for p in params if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
            if use.positional > len(positional):
                problems.append(f"{use.where}: {head} takes {len(positional)} positional arguments")
            unknown = set(use.keywords) - {p.name for p in params}
            if unknown:
                problems.append(f"{use.where}: {head} has no argument {sorted(unknown)}")
    assert problems == [], f"torch_npu {version}"


# documented limits ---------------------------------------------------------------------------------
def op_doc(docs: str, op: str) -> str:
    """The docstring torch_npu registers for `op`."""
    match = re.search(r'_add_torch_npu_docstr\(\s*"' + op + r'",\s*"""(.*?)"""', docs, re.S)
    assert match, f"no documentation of {op}"
    return match.group(1)


def documented_limits(docs: str) -> dict[str, object]:
    """The limits the emulation enforces, as _op_plugin_docs.py states them (same keys as profiles.LIMITS)."""
    attention, rotary = op_doc(docs, "npu_fusion_attention"), op_doc(docs, "npu_rotary_mul")
    dtypes = re.search(r"query: Tensor类型, 数据类型支持([\w、]+)", attention).group(1).split("、")
    rotary_dtypes = re.search(r"input：必选输入，4维Tensor，数据类型([\w, ]+)", rotary).group(1).split(", ")
    half = re.search(
        r"half模式：\s*input: layout支持: [^;]+; D < (\d+)，且为2的倍数; B, N < (\d+); [^，]+，B\*N <= (\d+)", rotary
    )
    seq = re.search(r"S: sequence length, 取值范围1~(\d+)M", attention)  # M: 1024 * 1024 tokens
    return {
        "npu_fusion_attention.head_num": int(re.search(r"Nq取值范围1~(\d+)", attention).group(1)),
        "npu_fusion_attention.head_dim": int(re.search(r"D: Head Dim[^\n]*?取值范围1~(\d+)", attention).group(1)),
        "npu_fusion_attention.dtypes": tuple(getattr(torch, name) for name in dtypes),
        "npu_fusion_attention.seq": int(seq.group(1)) * 1024 * 1024,
        "npu_rotary_mul.head_dim_below": int(half.group(1)),
        "npu_rotary_mul.batch_or_heads_below": int(half.group(2)),
        "npu_rotary_mul.backward_batch_times_heads": int(half.group(3)),
        "npu_rotary_mul.dtypes": tuple(getattr(torch, name.strip()) for name in rotary_dtypes),
    }


@pytest.mark.parametrize("version", VERSIONS)
def test_the_emulated_limits_are_the_documented_ones(version):
    assert documented_limits(real_package(version).docs) == dict(profiles.LIMITS)


# the Python of the device API ----------------------------------------------------------------------
def function_source(wheel: Path, member: str, name: str) -> str:
    with zipfile.ZipFile(wheel) as archive:
        tree = ast.parse(archive.read(member).decode())
    (node,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name]
    return ast.unparse(node)


@pytest.mark.parametrize("version", VERSIONS)
def test_mem_get_info_requires_an_index_exactly_where_the_real_one_does(version):
    member = {"2.1.0.post17": "torch_npu/npu/utils.py", "2.14.0": "torch_npu/npu/__init__.py"}[version]
    source = function_source(cached_wheel(version), member, "mem_get_info")
    real_optional = "_get_device_index(device, optional=True)" in source
    assert real_optional or "_get_device_index(device)" in source
    assert profiles.PROFILES[version].mem_get_info_index_optional is real_optional


@pytest.mark.parametrize("version", VERSIONS)
def test_the_fused_optimizer_flattens_by_storage_and_checks_contiguity_as_the_real_one(version):
    with zipfile.ZipFile(cached_wheel(version)) as wheel:
        base = wheel.read("torch_npu/optim/npu_fused_optim_base.py").decode()
        combine = wheel.read("torch_npu/utils/combine_tensors.py").decode()
    assert "grad_size = p.grad.storage().size()" in base  # a bucket view counts its whole bucket
    assert "total_numel += torch_npu.get_storage_size(tensor)" in combine
    requires_contiguous = "if not tensor.is_contiguous():" in function_source(
        cached_wheel(version), "torch_npu/utils/combine_tensors.py", "npu_combine_tensors"
    )
    assert profiles.PROFILES[version].combine_requires_contiguous is requires_contiguous


@pytest.mark.parametrize("version", VERSIONS)
def test_set_deterministic_level_exists_and_switches_torch_determinism_as_in_the_real_version(version):
    present = "set_deterministic_level" in real_package(version).npu_names
    assert present is ("set_deterministic_level" not in profiles.PROFILES[version].absent_npu_names)
    if present:
        body = function_source(cached_wheel(version), "torch_npu/npu/__init__.py", "set_deterministic_level")
        assert "torch.use_deterministic_algorithms(True)" in body and "warnings.warn" in body


@pytest.mark.slow
@pytest.mark.parametrize("version", VERSIONS)
def test_pip_downloads_each_profiles_wheel_for_its_platform_tag(version, tmp_path):
    """The download itself, into a fresh folder (the cache may have been filled by hand)."""
    result = pip_download(version, tmp_path)
    if result.returncode != 0 and "Could not find a version" not in result.stderr:
        pytest.skip(f"the package registry cannot be reached: {result.stderr.strip()[-300:]}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert find_wheel(tmp_path, version) is not None
