"""Run every benchmark in bench/ in turn and print their figures.

Each benchmark is a script with a `main()` that prints its own side-by-side table; this
runs them one after another so they never compete for the machine's cores. The servers
they compare against live in `bench/servers/` and are not benchmarks themselves.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def benchmark_scripts() -> list[Path]:
    return sorted(p for p in HERE.glob("*.py") if p.name != Path(__file__).name)


def main() -> int:
    scripts = benchmark_scripts()
    if not scripts:
        print("no benchmarks in bench/")
        return 0
    for script in scripts:
        print(f"== {script.stem} ==", flush=True)
        spec = importlib.util.spec_from_file_location(script.stem, script)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
