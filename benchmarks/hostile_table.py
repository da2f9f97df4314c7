"""The hostile-input cases of tests/test_hostile*.py as one table: case | expected | observed.

Each case runs as in the test suite, in its own temporary folder and run store; a failed
assertion shows as FAILED in the observed column (and the exit status is 1).

Run from the repository root: python -m benchmarks.hostile_table [--markdown] [FILE...]
(FILE: some of the test files only, e.g. tests/test_hostile_env.py)
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent.parent / "tests"


def load_cases(path: Path):
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))  # the case files import each other's helpers, as under pytest
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


def observe(module, hostile) -> tuple[bool, str]:
    with tempfile.TemporaryDirectory(prefix="hostile-") as folder:
        try:
            return True, module.run_case(hostile, Path(folder))
        except pytest.skip.Exception as skipped:
            return True, f"skipped: {skipped}"
        except AssertionError as error:
            return False, f"FAILED: {str(error).splitlines()[0] if str(error) else 'assertion'}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="a Markdown table (default: plain columns)")
    parser.add_argument("files", nargs="*", type=Path, help="case files (default: tests/test_hostile*.py)")
    args = parser.parse_args(argv)
    rows = []
    for path in args.files or sorted(TESTS.glob("test_hostile*.py")):
        module = load_cases(path.resolve())
        for hostile in module.CASES:
            ok, observed = observe(module, hostile)
            rows.append((hostile.name, hostile.expected, observed, ok))
    if args.markdown:
        print("| # | case | expected | observed |\n|---|---|---|---|")
        for i, (name, expected, observed, _) in enumerate(rows, 1):
            print(f"| {i} | {name} | {expected} | {observed.replace('|', '/')} |")
    else:
        width = max(len(name) for name, *_ in rows)
        for name, expected, observed, _ in rows:
            print(f"{name:<{width}}  {expected}\n{'':<{width}}  -> {observed}")
    failed = sum(not ok for *_, ok in rows)
    print(f"\n{len(rows)} cases, {len(rows) - failed} as expected, {failed} not", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
