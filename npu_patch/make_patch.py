"""Build VGGT_npu.patch: upstream VGGT at UPSTREAM_COMMIT made Ascend-native by one `git apply`.

The patch is generated, never hand-edited. It holds three kinds of file:

- mirrors: project files copied byte for byte into upstream's tree (the whole `vggt/runtime/` folder and
  the synthetic scene generator), so the patched tree and this repository share one source of truth;
- added files: our own files that exist only in the patched tree (`npu_patch/files/<upstream path>`);
- edits: small changes to upstream files, declared in `npu_patch/edits/*.yaml`. An edit names its anchor by
  the hash of an upstream line (`line`: the first 10 hex digits of sha1 of the line without its newline) or
  by a short `marker` substring that occurs on exactly one line (`nth: N` picks the N-th of repeated lines),
  then replaces `count` lines from the anchor (default 1; 0 inserts before it) or inserts after it
  (`after: true`) with `text`. No upstream code is quoted in this repository.

Usage:
    python -m npu_patch.make_patch --upstream DIR     regenerate from an upstream checkout at UPSTREAM_COMMIT
    python -m npu_patch.make_patch --refresh          re-mirror the new files in the existing patch (no upstream needed)
    python -m npu_patch.make_patch --hashes FILE      print each line's anchor hash (to write an edit)
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PATCH_DIR = Path(__file__).resolve().parent
PATCH_FILE = REPO_ROOT / "VGGT_npu.patch"
EDITS_DIR = PATCH_DIR / "edits"
ADDED_DIR = PATCH_DIR / "files"
UPSTREAM_COMMIT = "97bbde571faddde3ace3cfa7724a20448026c4c8"
# project path -> upstream path; a folder mirrors every *.py in it, whatever the folder holds at the time
MIRRORED_FOLDERS = {"vggt/runtime": "vggt/runtime"}
MIRRORED_FILES = {
    "training/data/synthetic.py": "training/data/synthetic.py",  # scenes in the Co3D layout for --data synthetic
    "training/data/augment.py": "training/data/augment.py",  # colour jitter without torchvision
}
ANCHOR_HASH_LENGTH = 10


class PatchError(RuntimeError):
    """An edit that does not fit upstream, a malformed patch, or a file that git apply would alter."""


# files the patch adds --------------------------------------------------------------------------------
def mirrored_files(repo_root: Path = REPO_ROOT) -> dict[str, Path]:
    """Upstream path -> project file, for every mirrored project file."""
    files = {}
    for project_folder, upstream_folder in MIRRORED_FOLDERS.items():
        for path in sorted((repo_root / project_folder).glob("*.py")):
            files[f"{upstream_folder}/{path.name}"] = path
    for project_path, upstream_path in MIRRORED_FILES.items():
        files[upstream_path] = repo_root / project_path
    return files


def added_files(added_dir: Path = ADDED_DIR) -> dict[str, Path]:
    """Upstream path -> file under npu_patch/files/, for our own files that only the patched tree has."""
    return {p.relative_to(added_dir).as_posix(): p for p in sorted(added_dir.rglob("*")) if p.is_file()}


def new_files(repo_root: Path = REPO_ROOT) -> dict[str, Path]:
    """Every file the patch adds: upstream path -> its source in this repository."""
    return {**mirrored_files(repo_root), **added_files(repo_root / "npu_patch" / "files")}


def whitespace_problems(text: str) -> list[str]:
    """What `git apply --whitespace=fix` would change in an added file: trailing blanks, blank or missing last line."""
    problems = [f"line {i}: trailing whitespace" for i, line in enumerate(text.split("\n"), 1) if line != line.rstrip()]
    problems += [f"line {i}: space before tab" for i, line in enumerate(text.split("\n"), 1) if " \t" in line]
    if not text.endswith("\n"):
        problems.append("no newline at the end")
    elif text.endswith("\n\n"):
        problems.append("blank line at the end")
    return problems


def git_blob_id(data: bytes) -> str:
    """The object id git gives a file with these bytes."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def new_file_section(upstream_path: str, source: Path) -> str:
    """The git diff of a new file at `upstream_path` holding `source`'s bytes."""
    text = source.read_text(encoding="utf-8")
    problems = whitespace_problems(text)
    if problems:
        raise PatchError(f"{source}: git apply --whitespace=fix would alter it ({'; '.join(problems[:3])}); fix it")
    lines = text.split("\n")[:-1]
    span = "1" if len(lines) == 1 else f"1,{len(lines)}"
    header = (
        f"diff --git a/{upstream_path} b/{upstream_path}\nnew file mode 100644\n"
        f"index 0000000..{git_blob_id(text.encode('utf-8'))[:7]}\n--- /dev/null\n+++ b/{upstream_path}\n"
        f"@@ -0,0 +{span} @@\n"
    )
    return header + "".join(f"+{line}\n" for line in lines)


# reading a patch -------------------------------------------------------------------------------------
@dataclass
class FileDiff:
    """One file's section of a git diff."""

    path: str
    text: str  # the whole section, from its `diff --git` line
    is_new: bool

    def added_text(self) -> str:
        """A new file's content, rebuilt from its hunks."""
        if not self.is_new:
            raise PatchError(f"{self.path} is an edit, not a new file")
        lines = self.text.split("\n")
        body = lines[lines.index(next(line for line in lines if line.startswith("@@"))) + 1 :]
        return "".join(line[1:] + "\n" for line in body if line.startswith("+"))


HUNK_HEADER = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


def parse_patch(text: str) -> list[FileDiff]:
    """Split a git-format patch into file sections, checking every hunk's line counts.

    Raises PatchError naming the file and hunk when a header is malformed or a hunk's lines do not add up.
    """
    if not text.startswith("diff --git "):
        raise PatchError("the patch does not start with a `diff --git` line")
    sections = re.split(r"(?m)^(?=diff --git )", text)[1:]
    diffs = []
    for section in sections:
        first = section.split("\n", 1)[0]
        match = re.fullmatch(r"diff --git a/(\S+) b/(\S+)", first)
        if not match or match.group(1) != match.group(2):
            raise PatchError(f"malformed or renaming diff header: {first!r}")
        path = match.group(1)
        lines = section.split("\n")
        if lines[-1] != "":
            raise PatchError(f"{path}: the section does not end with a newline")
        lines = lines[:-1]
        hunk_starts = [i for i, line in enumerate(lines) if line.startswith("@@")]
        if not hunk_starts:
            raise PatchError(f"{path}: no hunks")
        header = lines[: hunk_starts[0]]
        if f"+++ b/{path}" not in header:
            raise PatchError(f"{path}: no `+++ b/{path}` line")
        is_new = "new file mode 100644" in header and "--- /dev/null" in header
        if not is_new and f"--- a/{path}" not in header:
            raise PatchError(f"{path}: no `--- a/{path}` line")
        for start, end in zip(hunk_starts, hunk_starts[1:] + [len(lines)]):
            _check_hunk(path, lines[start], lines[start + 1 : end])
        diffs.append(FileDiff(path, section, is_new))
    return diffs


def _check_hunk(path: str, header: str, body: list[str]) -> None:
    match = HUNK_HEADER.match(header)
    if not match:
        raise PatchError(f"{path}: malformed hunk header {header!r}")
    old_count = 1 if match.group(2) is None else int(match.group(2))
    new_count = 1 if match.group(4) is None else int(match.group(4))
    kinds = [line[:1] for line in body if not line.startswith("\\")]  # "\ No newline at end of file"
    if any(kind not in (" ", "-", "+") for kind in kinds):
        raise PatchError(f"{path}: hunk {header!r} holds a line that is not context, removal or addition")
    old = sum(kind in (" ", "-") for kind in kinds)
    new = sum(kind in (" ", "+") for kind in kinds)
    if (old, new) != (old_count, new_count):
        raise PatchError(f"{path}: hunk {header!r} has {old} old and {new} new lines")


def join_sections(sections: Iterable[FileDiff]) -> str:
    return "".join(section.text for section in sorted(sections, key=lambda s: s.path))


# edits -----------------------------------------------------------------------------------------------
def anchor_hash(line: str) -> str:
    return hashlib.sha1(line.encode("utf-8")).hexdigest()[:ANCHOR_HASH_LENGTH]


def _anchor_index(lines: list[str], edit: dict, where: str) -> int:
    if "line" in edit:
        found = [i for i, line in enumerate(lines) if anchor_hash(line) == edit["line"]]
        what = f"line hash {edit['line']}"
    elif "marker" in edit:
        found = [i for i, line in enumerate(lines) if edit["marker"] in line]
        what = f"marker {edit['marker']!r}"
    else:
        raise PatchError(f"{where}: an edit needs `line` (a hash) or `marker`")
    nth = edit.get("nth")  # for a line that occurs more than once: its 1-based occurrence
    expected = len(found) >= nth if nth else len(found) == 1
    if not expected:
        wanted = f"at least {nth}" if nth else "exactly one"
        raise PatchError(
            f"{where}: {what} matches {len(found)} lines, not {wanted} (is upstream at {UPSTREAM_COMMIT}?)"
        )
    return found[nth - 1 if nth else 0]


def apply_edits(text: str, edits: list[dict], where: str) -> str:
    """`text` with `edits` applied; anchors are all found in the original text before anything changes."""
    lines = text.split("\n")
    planned = []
    for number, edit in enumerate(edits, 1):
        index = _anchor_index(lines, edit, f"{where} edit {number}")
        count = int(edit.get("count", 1))
        if edit.get("after"):
            index, count = index + 1, 0
        replacement = [] if not edit.get("text") else edit["text"].rstrip("\n").split("\n")
        planned.append((index, count, replacement))
    planned.sort(key=lambda p: (p[0], p[1] > 0))  # at one index, a replacement goes before an insertion
    for (index, count, _), (next_index, _, _) in zip(planned, planned[1:]):
        if index + count > next_index:
            raise PatchError(f"{where}: two edits overlap at line {next_index + 1}")
    for index, count, replacement in reversed(planned):
        lines[index : index + count] = replacement
    return "\n".join(lines)


def load_edits(edits_dir: Path = EDITS_DIR) -> dict[str, list[dict]]:
    """Upstream path -> its edits, from the YAML documents (`file:` and `edits:` keys) of npu_patch/edits/*.yaml."""
    import yaml  # optional: only regenerating the patch needs it (PyYAML comes with Hydra)

    by_file: dict[str, list[dict]] = {}
    for path in sorted(edits_dir.glob("*.yaml")):
        for spec in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            by_file.setdefault(spec["file"], []).extend(spec["edits"])
    return by_file


# building ----------------------------------------------------------------------------------------------
def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def edited_sections(upstream: Path, edits: dict[str, list[dict]]) -> list[FileDiff]:
    """The diffs of upstream's edited files, made by git in a scratch repository."""
    with tempfile.TemporaryDirectory(prefix="vggt-npu-patch-") as scratch:
        work = Path(scratch)
        _git(work, "init", "-q")
        for rel in edits:
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(upstream / rel, work / rel)
        _git(work, "add", "-A")
        _git(
            work,
            "-c",
            "user.name=make_patch",
            "-c",
            "user.email=make_patch@localhost",
            "commit",
            "-q",
            "-m",
            "upstream",
        )
        for rel, file_edits in edits.items():
            original = (work / rel).read_text(encoding="utf-8")
            (work / rel).write_text(apply_edits(original, file_edits, rel), encoding="utf-8")
        _git(work, "add", "-A")
        diff = _git(work, "-c", "core.quotepath=off", "diff", "--cached", "--no-renames", "--no-color")
    sections = parse_patch(diff)
    for section in sections:
        added = [line for line in section.text.split("\n") if line.startswith("+") and not line.startswith("+++")]
        blank = [line for line in added if line != line.rstrip()]
        if blank:
            raise PatchError(f"{section.path}: an edit adds a line with trailing whitespace: {blank[0]!r}")
    return sections


def check_upstream(upstream: Path) -> None:
    if not (upstream / "vggt" / "models" / "vggt.py").is_file():
        raise PatchError(f"{upstream} is not an upstream VGGT checkout (no vggt/models/vggt.py)")
    if (upstream / ".git").exists():
        head = _git(upstream, "rev-parse", "HEAD").strip()
        dirty = _git(upstream, "status", "--porcelain", "--untracked-files=no").strip()
        if dirty:
            raise PatchError(f"{upstream} has local changes; the patch is made from a clean checkout")
        if head != UPSTREAM_COMMIT:
            print(f"note: {upstream} is at {head}, not {UPSTREAM_COMMIT}; anchors check the content", file=sys.stderr)


def build(upstream: Path, repo_root: Path = REPO_ROOT) -> str:
    """The whole patch from an upstream checkout."""
    check_upstream(upstream)
    sections = edited_sections(upstream, load_edits(repo_root / "npu_patch" / "edits"))
    existing = [path for path in new_files(repo_root) if (upstream / path).exists()]
    if existing:
        raise PatchError(f"files the patch adds already exist upstream: {', '.join(existing)}")
    sections += [FileDiff(path, new_file_section(path, source), True) for path, source in new_files(repo_root).items()]
    return join_sections(sections)


def refresh(patch_text: str, repo_root: Path = REPO_ROOT) -> str:
    """`patch_text` with every added file re-read from this repository; edits of upstream files are kept as they are.

    Mirrored files that left the project leave the patch; new ones in a mirrored folder join it.
    """
    owned = new_files(repo_root)
    kept = [s for s in parse_patch(patch_text) if not s.is_new]
    return join_sections(
        kept + [FileDiff(path, new_file_section(path, source), True) for path, source in owned.items()]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m npu_patch.make_patch",
        description=__doc__.split("\n\n")[0],
        epilog=(
            "Regenerate after changing npu_patch/edits:\n"
            "  python -m npu_patch.make_patch --upstream /path/to/vggt   (a checkout at "
            f"{UPSTREAM_COMMIT[:12]})\n"
            "Refresh after changing a file the patch adds (vggt/runtime, the scene generator, the colour\n"
            "augmentation, npu_patch/files); no upstream checkout needed:\n"
            "  python -m npu_patch.make_patch --refresh"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--upstream", type=Path, metavar="DIR", help="regenerate from this upstream checkout")
    mode.add_argument("--refresh", action="store_true", help="re-mirror the added files of the existing patch")
    mode.add_argument("--hashes", type=Path, metavar="FILE", help="print the anchor hash of each line of FILE")
    parser.add_argument("--out", type=Path, default=PATCH_FILE, help=f"the patch to write (default {PATCH_FILE.name})")
    args = parser.parse_args(argv)
    try:
        if args.hashes:
            for number, line in enumerate(args.hashes.read_text(encoding="utf-8").split("\n"), 1):
                print(f"{number:5d} {anchor_hash(line)}")
            return 0
        if args.refresh:
            if not args.out.is_file():
                raise PatchError(f"{args.out} does not exist; generate it first with --upstream DIR")
            text = refresh(args.out.read_text(encoding="utf-8"))
        else:
            text = build(args.upstream.resolve())
    except (PatchError, OSError, subprocess.CalledProcessError) as err:
        print(f"make_patch: {err}", file=sys.stderr)
        return 2
    args.out.write_text(text, encoding="utf-8")
    sections = parse_patch(text)
    print(
        f"wrote {args.out}: {sum(s.is_new for s in sections)} new files, {sum(not s.is_new for s in sections)} edited"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
