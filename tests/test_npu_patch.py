"""VGGT_npu.patch in CI (no upstream checkout): it parses, and every file it adds is the project's, byte for byte."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

from npu_patch.make_patch import (
    MIRRORED_FILES,
    PATCH_FILE,
    PatchError,
    anchor_hash,
    apply_edits,
    mirrored_files,
    new_file_section,
    new_files,
    parse_patch,
    refresh,
    whitespace_problems,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sections():
    return parse_patch(PATCH_FILE.read_text(encoding="utf-8"))


def test_patch_parses_into_one_section_per_file_with_consistent_hunks(sections) -> None:
    paths = [s.path for s in sections]
    assert len(paths) == len(set(paths))
    assert paths == sorted(paths)


def test_every_added_file_is_the_projects_file_byte_for_byte(sections) -> None:
    """A runtime, generator or npu_patch/files change without `make_patch --refresh` fails here."""
    added = {s.path: s for s in sections if s.is_new}
    sources = new_files()
    assert set(added) == set(sources), "run python -m npu_patch.make_patch --refresh"
    for path, source in sources.items():
        assert added[path].added_text().encode("utf-8") == source.read_bytes(), (
            f"{path} in VGGT_npu.patch differs from {source}: run python -m npu_patch.make_patch --refresh"
        )


def test_the_whole_runtime_folder_is_mirrored() -> None:
    runtime = {p.name for p in (REPO_ROOT / "vggt" / "runtime").glob("*.py")}
    mirrored = {Path(path).name for path in mirrored_files() if path.startswith("vggt/runtime/")}
    assert runtime == mirrored and "kernels.py" in mirrored


def test_refresh_leaves_the_committed_patch_unchanged() -> None:
    text = PATCH_FILE.read_text(encoding="utf-8")
    assert refresh(text) == text


def test_added_files_survive_git_apply_whitespace_fix() -> None:
    for path, source in new_files().items():
        assert whitespace_problems(source.read_text(encoding="utf-8")) == [], path


def _imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_mirrored_files_import_nothing_of_the_project_but_the_runtime() -> None:
    """Upstream's tree has its own vggt package and runs training/ as the working directory."""
    for project_path in MIRRORED_FILES:
        imported = _imported_modules(REPO_ROOT / project_path)
        ours = {m for m in imported if m.split(".")[0] in ("vggt", "training", "tests", "benchmarks")}
        assert not ours, f"{project_path} imports {ours}"
    for path in (REPO_ROOT / "vggt" / "runtime").glob("*.py"):
        ours = {m for m in _imported_modules(path) if m.split(".")[0] == "vggt" and not m.startswith("vggt.runtime")}
        assert not ours, f"{path} imports {ours}"


def test_edits_of_upstream_files_are_a_small_part_of_the_patch(sections) -> None:
    def changed(section):
        return sum(line[:1] in "+-" and line[:3] not in ("+++", "---") for line in section.text.split("\n")[4:])

    edited = sum(changed(s) for s in sections if not s.is_new)
    added = sum(changed(s) for s in sections if s.is_new)
    assert edited < added / 2, (edited, added)


def test_parser_rejects_a_hunk_whose_line_counts_do_not_add_up(tmp_path: Path) -> None:
    source = tmp_path / "a.py"
    source.write_text("x = 1\ny = 2\n")
    section = new_file_section("a.py", source)
    assert parse_patch(section)[0].added_text() == "x = 1\ny = 2\n"
    with pytest.raises(PatchError, match="old and"):
        parse_patch(section.replace("@@ -0,0 +1,2 @@", "@@ -0,0 +1,3 @@"))
    with pytest.raises(PatchError, match="diff --git"):
        parse_patch("--- a/x\n")


def test_added_file_with_trailing_whitespace_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "a.py"
    source.write_text("x = 1 \n")
    with pytest.raises(PatchError, match="whitespace"):
        new_file_section("a.py", source)
    assert whitespace_problems("a\n\n") == ["blank line at the end"]
    assert whitespace_problems("a") == ["no newline at the end"]


def test_edits_find_their_anchor_by_hash_marker_or_occurrence() -> None:
    text = "alpha\nbeta\nrepeat\ngamma\nrepeat\n"
    edits = [
        {"line": anchor_hash("beta"), "text": "BETA\nBETA2\n"},
        {"marker": "amm", "after": True, "text": "after gamma\n"},
        {"line": anchor_hash("repeat"), "nth": 2, "count": 1},
        {"marker": "alp", "count": 0, "text": "first\n"},
    ]
    assert apply_edits(text, edits, "t") == "first\nalpha\nBETA\nBETA2\nrepeat\ngamma\nafter gamma\n"


def test_an_ambiguous_or_missing_anchor_names_the_file_and_edit() -> None:
    with pytest.raises(PatchError, match="t edit 1: line hash .* matches 2 lines"):
        apply_edits("same\nsame\n", [{"line": anchor_hash("same"), "text": "x"}], "t")
    with pytest.raises(PatchError, match="t edit 1: marker 'nope' matches 0 lines"):
        apply_edits("a\n", [{"marker": "nope", "text": "x"}], "t")


def test_every_runtime_name_the_patched_tree_uses_exists_in_our_runtime(sections) -> None:
    """A runtime rename without updating npu_patch/edits (or npu_patch/files) would break the patched tree only."""
    mirrored = set(mirrored_files())
    added = [
        line[1:]
        for section in sections
        if section.path not in mirrored
        for line in section.text.split("\n")
        if line.startswith("+") and not line.startswith("+++")
    ]
    code = "\n".join(line.split("#", 1)[0] for line in added)
    used = {("vggt.runtime", name) for name in re.findall(r"\bruntime\.(\w+)", code)}
    used |= {("vggt.runtime.kernels", name) for name in re.findall(r"\bkernels\.(\w+)", code)}
    for module, names in re.findall(r"from (vggt\.runtime(?:\.\w+)?) import ([\w, ]+)", code):
        used |= {(module, name.strip()) for name in names.split(",")}
    assert ("vggt.runtime", "configure_process") in used and ("vggt.runtime.kernels", "attention") in used
    missing = sorted(f"{m}.{n}" for m, n in used if not hasattr(importlib.import_module(m), n))
    assert not missing, f"VGGT_npu.patch uses {missing}, which vggt.runtime no longer has: update npu_patch/edits"


def test_patched_upstream_trainer_loads_checkpoints_as_plain_data_only(sections) -> None:
    """torch 2.1 (Ascend's) defaults torch.load to weights_only=False: a foreign checkpoint could run code on load."""
    trainer = next(s for s in sections if s.path == "training/trainer.py")
    hunks = re.split(r"^@@ .*@@.*$", trainer.text, flags=re.M)[1:]
    loading = [h for h in hunks if "torch.load(" in h]
    assert loading, "the patch does not touch upstream's checkpoint load in training/trainer.py"
    for hunk in loading:
        lines = hunk.splitlines()
        removed = [line for line in lines if line.startswith("-") and "torch.load(" in line]
        kept = [line[1:] for line in lines if line[:1] in (" ", "+") and "torch.load(" in line]
        assert removed == ['-            checkpoint = torch.load(f, map_location="cpu")']
        assert kept and all("weights_only=True" in line for line in kept)
