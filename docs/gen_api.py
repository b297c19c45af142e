"""Generate the API reference: one page per public module of the steelflow package.

Run by mkdocs-gen-files at build time (mkdocs.yml), so the pages follow the package as it is: a module
that moves or appears gets its page without anyone editing a list. Private modules (a name starting with
``_``) are skipped; a package's page is its ``__init__``. The navigation is written as a literate-nav
``SUMMARY.md``.
"""

from pathlib import Path

import mkdocs_gen_files

PACKAGE = "steelflow"
ROOT = Path(__file__).resolve().parent.parent
REFERENCE = Path("reference")


def in_package(path: Path, package_dir: Path) -> bool:
    """Whether every folder from ``package_dir`` down to ``path`` has an ``__init__.py``: as for setuptools
    and griffe, a module in a plain folder is not part of the package."""
    folder = path.parent
    while folder != package_dir.parent:
        if not (folder / "__init__.py").is_file():
            return False
        folder = folder.parent
    return True


def public_modules(package_dir: Path) -> list[tuple[str, ...]]:
    """Dotted parts of every public module under ``package_dir``, packages included, sorted."""
    modules = []
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(package_dir.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts[-1] == "__main__" or any(part.startswith("_") for part in parts):
            continue
        if in_package(path, package_dir):
            modules.append(parts)
    return modules


def main() -> None:
    nav = mkdocs_gen_files.Nav()
    for parts in public_modules(ROOT / PACKAGE):
        page = REFERENCE.joinpath(*parts).with_suffix(".md")
        nav[parts] = page.relative_to(REFERENCE).as_posix()
        with mkdocs_gen_files.open(page, "w") as fd:
            fd.write(f"::: {'.'.join(parts)}\n")
        source = ROOT.joinpath(*parts)
        source = source / "__init__.py" if source.is_dir() else source.with_suffix(".py")
        mkdocs_gen_files.set_edit_path(page, source.relative_to(ROOT).as_posix())
    with mkdocs_gen_files.open(REFERENCE / "SUMMARY.md", "w") as fd:
        fd.writelines(nav.build_literate_nav())


main()
