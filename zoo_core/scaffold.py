"""``zoo new-plugin``: writes a plugin package skeleton (model, dataset or backend) whose tests pass once installed."""

from __future__ import annotations

import re
import shutil
import string
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import UsageError, ZooError

KINDS = ("model", "dataset", "backend")
TEMPLATES = Path(__file__).resolve().parent / "templates" / "plugin"
PACKAGE_DIR = "PACKAGE"  # the package folder's name in the templates
SUFFIX = ".tmpl"

DESCRIPTIONS = {
    "model": "the {name} model, declared as data: zoo exports it and prepares its input",
    "dataset": "the {name} dataset kind, a folder of images and a labels.csv",
    "backend": "the {name} backend, which compiles an ONNX file and runs batches on it",
}

_NAME = re.compile(r"[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*")


@dataclass(frozen=True)
class Names:
    """How one plugin name is spelled where: entry point, distribution, folder, package."""

    name: str  # the entry-point name, and the model/dataset/backend name: "my-net"
    dist: str  # the distribution and its folder: "zoo-my-net"
    package: str  # the import package: "zoo_my_net"


@dataclass(frozen=True)
class Skeleton:
    """What :func:`write_plugin` wrote."""

    root: Path
    kind: str
    names: Names
    files: tuple[Path, ...]  # relative to root, sorted


def plugin_names(name: str) -> Names:
    """The spellings of ``name``, or a usage error when it cannot be a package name."""
    if not _NAME.fullmatch(name):
        raise UsageError(
            f"plugin name {name!r} is not a lower-case name",
            note="use lower-case letters and digits, with single '-' or '_' between them, starting with a letter: "
            "e.g. mynet",
        )
    bare = re.sub(r"^zoo[-_](?=.)", "", name)  # `zoo new-plugin zoo-mynet` means mynet
    return Names(name=bare, dist=f"zoo-{bare.replace('_', '-')}", package=f"zoo_{bare.replace('-', '_')}")


def render(name: str, kind: str = "model") -> dict[str, str]:
    """The skeleton's files, path relative to its root -> content."""
    if kind not in KINDS:
        raise UsageError(f"unknown plugin kind {kind!r}", note=f"choose one of: {', '.join(KINDS)}")
    names = plugin_names(name)
    values = {
        "name": names.name,
        "dist": names.dist,
        "package": names.package,
        "kind": kind,
        "description": DESCRIPTIONS[kind].format(name=names.name),
    }
    files: dict[str, str] = {}
    for folder in (TEMPLATES / "common", TEMPLATES / kind):
        for template in sorted(folder.rglob(f"*{SUFFIX}")):
            relative = template.relative_to(folder).as_posix().removesuffix(SUFFIX).replace(PACKAGE_DIR, names.package)
            files[relative] = string.Template(template.read_text()).substitute(values)
    return files


def write_plugin(name: str, kind: str = "model", directory: Path | str = ".") -> Skeleton:
    """Write the skeleton into ``directory/zoo-NAME/``; an existing folder of that name is left alone."""
    files = render(name, kind)
    names = plugin_names(name)
    root = Path(directory) / names.dist
    if root.exists():
        raise UsageError(f"{root} already exists", note="choose another name or --dir, or remove that folder")
    try:
        Path(directory).mkdir(parents=True, exist_ok=True)
        # Written beside the target and renamed into place: an interrupted run leaves no half skeleton.
        staging = Path(tempfile.mkdtemp(prefix=f".{names.dist}-", dir=directory))
        try:
            for relative, content in files.items():
                path = staging / relative
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(content)
            staging.rename(root)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    except OSError as exc:
        raise ZooError(f"cannot write {root}: {exc.strerror or exc}",
                       note="choose a writable folder with --dir") from None
    return Skeleton(root=root, kind=kind, names=names, files=tuple(sorted(Path(p) for p in files)))
