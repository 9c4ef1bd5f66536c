"""Run one fuzz target: coverage-guided with atheris (libFuzzer), or with hypothesis.

Usage (from the repository root, with the project's virtualenv)::

    python fuzz/run.py --list
    python fuzz/run.py rtcp [libFuzzer options, e.g. -max_total_time=600 -jobs=2 fuzz/corpus/rtcp]
    python fuzz/run.py rtcp --replay crash-1234 ...          # re-run saved inputs
    python fuzz/run.py rtcp --hypothesis [--examples 100000]  # no atheris needed

Atheris (``pip install atheris``; wheels for CPython 3.11 on x86-64 Linux) instruments every
loaded module once the target has run on an empty input (so its lazy imports are in), and
libFuzzer steers by new coverage; a
failing input is written as ``crash-<sha1>`` in the working directory and the run stops.
``--hypothesis`` draws random bytes through hypothesis instead (shrinking a failure to a small
example, with no coverage feedback): the same promise, weaker search. Not run by the test
suite; the property tests under tests/ check the same promises on every run.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fuzz.targets import TARGETS  # noqa: E402


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", nargs="?", choices=sorted(TARGETS), help="the parser to fuzz")
    parser.add_argument("--list", action="store_true", help="list the targets and exit")
    parser.add_argument("--replay", nargs="+", metavar="FILE", help="run saved inputs once")
    parser.add_argument("--hypothesis", action="store_true", help="random bytes, no atheris")
    parser.add_argument("--examples", type=int, default=20_000, help="with --hypothesis")
    args, libfuzzer_args = parser.parse_known_args(argv)
    if args.list or not args.target:
        for name, (function, _modules) in sorted(TARGETS.items()):
            print(f"{name:18} {(function.__doc__ or '').splitlines()[0]}")
        return 0
    function, modules = TARGETS[args.target]
    if args.replay:
        for path in args.replay:
            function(Path(path).read_bytes())
            print(f"{path}: ok")
        return 0
    if args.hypothesis:
        return _hypothesis(function, args.examples)
    import atheris  # noqa: PLC0415 - only the coverage-guided mode needs it

    for module in modules:
        importlib.import_module(module)
    function(b"")  # imports what the target needs lazily, so that all of it is instrumented
    atheris.instrument_all()
    atheris.Setup([sys.argv[0], *libfuzzer_args], function)
    atheris.Fuzz()
    return 0


def _hypothesis(function: object, examples: int) -> int:
    from hypothesis import HealthCheck, given, settings  # noqa: PLC0415
    from hypothesis import strategies as st  # noqa: PLC0415

    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(st.binary(max_size=4096))
    def run(data: bytes) -> None:
        function(data)  # type: ignore[operator]

    run()
    print(f"{examples} examples: no broken promise")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
