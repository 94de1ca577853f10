#!/usr/bin/env bash
# Every source path the docs name exists (issue 15): the README and docs/
# point a reader at files (docs/architecture.md lists the files a message
# crosses, in order), and a file moved or renamed would leave them pointing
# at nothing. Checks each `producer/…`, `consumer/…`, `shared/…`, `e2e/…`,
# `bench/…`, `scripts/…`, `migrations/…` path written in backquotes; a
# path with `<…>` or `*` in it is a pattern, not a file, and is skipped.
# A bare file name (`address.rs` beside `shared/src/webhook/target.rs`) is
# not checked. Exit code 1 if a path is missing.
#
#   scripts/check-doc-paths.sh     # from anywhere in the checkout
set -euo pipefail
cd "$(dirname "$0")/.."
python3 - README.md docs/*.md <<'PY'
import os, re, sys
missing = []
roots = ("producer/", "consumer/", "shared/", "e2e/", "bench/", "scripts/", "migrations/", "monitoring/")
for doc in sys.argv[1:]:
    for n, line in enumerate(open(doc, encoding="utf-8"), 1):
        for path in re.findall(r"`([A-Za-z0-9_./-]+)`", line):
            if not path.startswith(roots) or "<" in path or "*" in path:
                continue
            if not os.path.exists(path.rstrip("/")):
                missing.append(f"{doc}:{n}: `{path}` does not exist")
for m in missing:
    print(m)
if missing:
    sys.exit(1)
print("every path the docs name exists")
PY
