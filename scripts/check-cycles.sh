#!/usr/bin/env bash
# No import cycle between the files of any crate of the workspace (issue 15):
# scripts/lib/import_cycles.py builds each crate's file graph from its
# `use` declarations and inline paths (crate::, super::, self::, child
# modules), following re-exports, and prints every cycle with the lines
# that make it. Exit code 1 if there is one.
#
# Why a script and not a tool from crates.io: cargo-modules 0.27 (the
# newest that builds with rustc 1.95) checks --acyclic on its item graph,
# where every type owns its methods and `fn new() -> Self` uses the type,
# so it reports a "cycle" in every crate (Secret <-> Secret::new); and
# cargo-cycles 0.2 reads only `use` declarations (not `crate::outbox::f()`
# in code) and misses the cycles this check exists for.
#
#   scripts/check-cycles.sh        # from anywhere in the checkout
set -euo pipefail
cd "$(dirname "$0")/.."
command -v python3 >/dev/null || { echo "check-cycles: python3 is missing (apt-get install python3)" >&2; exit 2; }
# The checker must find the cycles of crates with a known answer first.
python3 scripts/lib/import_cycles.py --self-test
python3 scripts/lib/import_cycles.py
