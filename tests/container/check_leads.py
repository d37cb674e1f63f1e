"""make container-test: compare the leads of a member's JSON report (on stdin) with the expected ones.

Usage: check_leads.py MEMBER EXPECTED_JSON < REPORT_JSON. Prints each lead as TYPE:VALUE and its
holder count; exits non-zero, naming both sets, when they differ.
"""

from __future__ import annotations

import json
import sys


def main() -> int:
    member, expected_file = sys.argv[1], sys.argv[2]
    leads = json.load(sys.stdin)["leads"]
    found = {f"{lead['type']}:{lead['value']}": lead["holder_count"] for lead in leads}
    with open(expected_file, encoding="utf-8") as file:
        expected = json.load(file)[member]
    for key, count in sorted(found.items()):
        print(f"{member}: lead {key} held by {count} members")
    if found != expected:
        print(f"{member}: found {found}, expected {expected}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
