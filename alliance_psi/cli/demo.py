"""``alliance-psi demo``: a throwaway alliance on this machine, end to end, checked.

It creates a CA and certificates, a coordinator and three key custodians holding a 2-of-3
threshold epoch (dealt by the demo itself, which only a demo may do; each custodian independent,
certified by a CA of its own, which every member pins) as separate server processes
on loopback ports (each serving only the members enrolled in its own database), and member nodes
as separate processes with their own databases, each asking any two custodians at once.
Each member imports a synthetic blacklist (valid mobile numbers, resident IDs, bank cards and
credit codes; one file in GB18030 as Excel writes it on Chinese Windows) with planted shared
leads, joins one round, and writes its HTML and JSON reports. The demo then checks, from the
signed JSON reports, that every member found exactly the planted leads it holds.

Then the living service: the operator opens a continuous scope, every member runs ``node run``
(which sends its set to the scope, follows its alerts and notifies: an alert log per member), and
bank-b drops a file into its inbox with an identifier only bank-a holds. bank-b's node imports it
and commits the delta; bank-a's node receives the coordinator's signed MATCH alert, verifies it and
applies it; the demo prints the delay from bank-b's commit to bank-a's alert.
"""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from alliance_psi._plural import plural
from alliance_psi.cli._options import reported
from alliance_psi.errors import AlliancePsiError

if TYPE_CHECKING:
    from rich.console import Console

    from alliance_psi.cli._local_alliance import LocalAlliance

__all__ = ["demo"]

MEMBER_NAMES = ("bank-a", "bank-b", "cfc-c", "bank-d", "cfc-e", "bank-f", "bank-g", "cfc-h", "bank-i", "bank-j")
DISPLAY = {"bank-a": "甲银行", "bank-b": "乙银行", "cfc-c": "丙消费金融"}
_CN_HEADERS = {
    "type": "类型",
    "value": "值",
    "category": "类别",
    "severity": "级别",
    "first_seen": "首次发现",
    "case_ref": "案件编号",
}


def _canonical(row: dict[str, Any]) -> str:
    from alliance_psi.identifiers import normalize

    return normalize(row["type"], row["value"]).canonical


def _plant(
    rng: random.Random, members: list[str], size: int, shared: int
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, int]]:
    """Per-member rows, and {canonical value: holder count} of the planted shared identifiers.

    Every member flags a planted identifier under a category of its own choosing, as real members do.
    """
    from alliance_psi.identifiers.synthetic import blacklist_rows
    from alliance_psi.protocol.leads import CATEGORIES

    universe = blacklist_rows(rng, size * len(members) + shared)
    lists: dict[str, list[dict[str, Any]]] = {m: [] for m in members}
    holders: dict[str, int] = {}
    for row in universe[:shared]:
        group = rng.sample(members, rng.randint(2, len(members)))
        holders[_canonical(row)] = len(group)
        for member in group:
            case_ref = f"{member.split('-')[-1].upper()}-{rng.randint(2024, 2026)}-{rng.randint(0, 999_999):06d}"
            lists[member].append({**row, "category": rng.choice(CATEGORIES), "case_ref": case_ref})
    for i, member in enumerate(members):
        lists[member].extend(universe[shared + i * size : shared + (i + 1) * size])
        rng.shuffle(lists[member])
    return lists, holders


def _write_blacklist(path: Path, rows: list[dict[str, Any]], style: int) -> Path:
    fields = ["type", "value", "category", "severity", "first_seen", "case_ref"]
    if style % 3 == 1:  # GB18030 with Chinese headers, as Excel saves a CSV on Chinese Windows.
        path = path.with_suffix(".csv")
        with path.open("w", encoding="gb18030", newline="") as handle:
            plain = csv.writer(handle)
            plain.writerow([_CN_HEADERS[f] for f in fields])
            plain.writerows([[str(row.get(f) or "") for f in fields] for row in rows])
    elif style % 3 == 2:
        path = path.with_suffix(".jsonl")
        with path.open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps({f: str(row.get(f) or "") for f in fields}, ensure_ascii=False) + "\n")
    else:
        path = path.with_suffix(".csv")
        with path.open("w", encoding="utf-8-sig", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
    return path


@click.command("demo")
@click.option(
    "--members", type=click.IntRange(2, len(MEMBER_NAMES)), default=3, show_default=True, help="Member nodes."
)
@click.option("--size", type=click.IntRange(min=10), default=2000, show_default=True, help="Identifiers per member.")
@click.option(
    "--threshold", type=click.IntRange(min=2), default=2, show_default=True, help="Holders needed for a lead."
)
@click.option(
    "--shared", type=click.IntRange(min=1), default=None, help="Planted shared identifiers (default: size/10)."
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo-output"),
    show_default=True,
    help="Where the throwaway alliance and the reports go (replaced on each run).",
)
@click.option("--seed", type=int, default=20261123, show_default=True, help="Seed of the synthetic blacklists.")
def demo(members: int, size: int, threshold: int, shared: int | None, out: Path, seed: int) -> None:
    """Run a whole alliance on this machine and check that every planted lead is found."""
    if threshold > members:
        raise click.BadParameter(f"threshold {threshold} exceeds the {members} members", param_hint="--threshold")
    with reported():
        _demo(members, size, threshold, shared or max(size // 10, 5), out, seed)


def _demo(members_count: int, size: int, threshold: int, shared: int, out: Path, seed: int) -> None:
    from rich.console import Console
    from rich.table import Table

    from alliance_psi.cli._local_alliance import local_alliance
    from alliance_psi.cli._options import custodian_trust_warnings
    from alliance_psi.services.epoch_files import load_public_epoch

    console = Console()
    started = time.monotonic()
    members = list(MEMBER_NAMES[:members_count])
    rng = random.Random(seed)
    lists, planted = _plant(rng, members, size, shared)
    with local_alliance(out, members, display_names=DISPLAY, threshold=True) as alliance:
        addresses = ", ".join(server.address for server in alliance.custodians)
        console.print(
            f"[bold]alliance[/bold]: CA and certificates for {len(members)} members, the operator, a coordinator "
            f"on {alliance.coordinator.address} and 2-of-3 threshold key custodians on {addresses} "
            "(each certified by a CA of its own, as an independent custodian is, which every member pins); "
            f"each server serves only the {len(members)} members its own operator enrolled by key"
        )
        assert alliance.epoch_file is not None  # A threshold alliance.
        public = load_public_epoch(alliance.epoch_file)
        for warning in custodian_trust_warnings([], public=public):
            console.print(f"[yellow]{warning}[/yellow] (a demo; docs/design.md#threshold-custody)")
        for i, member in enumerate(members):
            blacklist = _write_blacklist(alliance.home(member) / "blacklist", lists[member], i)
            alliance.run_node(member, "import", str(blacklist))
        console.print(
            f"[bold]blacklists[/bold]: {plural(size, 'identifier')} per member + {plural(shared, 'planted shared lead')} "
            f"(CSV UTF-8, CSV GB18030, JSONL), imported by each member's node"
        )
        round_id = alliance.create_round(
            name="演示轮次 demo round", threshold=threshold, types=("phone", "id_card", "bank_card", "uscc")
        )
        console.print(f"[bold]round[/bold] {round_id}: threshold {threshold}, {len(members)} members invited")
        joins = [
            subprocess.Popen(
                alliance.node_command(m, "join", round_id, "--wait", "300"),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for m in members
        ]
        for member, proc in zip(members, joins, strict=False):
            stdout, stderr = proc.communicate(timeout=900)
            if proc.returncode != 0:
                raise AlliancePsiError(f"{member}: join failed:\n{(stderr or stdout).strip()[-2000:]}")
        table = Table(title=f"demo round {round_id} (threshold {threshold})")
        for column in ("member", "identifiers", "leads found", "planted", "by holder count", "check"):
            table.add_column(column)
        failures = []
        for member in members:
            home = alliance.home(member)
            for fmt in ("html", "json"):
                alliance.run_node(member, "report", round_id, "--format", fmt, "-o", str(home / f"report.{fmt}"))
            found = _found(home / "report.json")
            held = {_canonical(row) for row in lists[member]}
            expected = {v: n for v, n in planted.items() if n >= threshold and v in held}
            ok = found == expected
            if not ok:
                failures.append(member)
            holders = Counter(found.values())
            table.add_row(
                member,
                f"{len(lists[member]):,}",
                f"{len(found):,}",
                f"{len(expected):,}",
                ", ".join(f"{n}: {c}" for n, c in sorted(holders.items(), reverse=True)),
                "[green]ok[/green]" if ok else "[red]MISMATCH[/red]",
            )
        console.print(table)
        if not failures:
            _alert_step(alliance, members, lists, planted, threshold, console)
    if failures:
        raise AlliancePsiError(f"found != planted for {', '.join(failures)}")
    console.print(f"[green]found == planted for every member[/green] in {time.monotonic() - started:.1f} s")
    for member in members:
        console.print(f"  {member}: {out / member / 'report.html'}  (also report.json, node.toml, node.db)")


def _found(report_json: Path) -> dict[str, int]:
    """{canonical value: holder count} of the leads in a JSON report."""
    data = json.loads(report_json.read_text(encoding="utf-8"))
    return {lead["value"]: lead["holder_count"] for lead in data["leads"]}


_SCOPE_TYPES = ("phone", "id_card", "bank_card", "uscc")
_STEP_TIMEOUT = 300.0  # Seconds any one wait of the alert step may take (a shared machine), then it fails.


def _alert_step(
    alliance: LocalAlliance,
    members: list[str],
    lists: dict[str, list[dict[str, Any]]],
    planted: dict[str, int],
    threshold: int,
    console: Console,
) -> None:
    """A continuous scope: bank-b adds an identifier bank-a alone holds; bank-a's node gets the alert."""
    scope_id = alliance.create_round(name="演示常设范围 demo watch", threshold=2, types=_SCOPE_TYPES, continuous=True)
    new = next(
        row for row in lists["bank-a"] if row["type"] in _SCOPE_TYPES and _canonical(row) not in planted
    )  # bank-a's alone.
    runs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for member in members:
            home = alliance.home(member)
            with (home / "node-run.log").open("wb") as log:
                runs[member] = subprocess.Popen(
                    alliance.node_command(
                        member,
                        "run",
                        *("--inbox", str(home / "inbox"), "--poll-every", "0.2", "--settle-seconds", "0.2"),
                        *("--submit-every", "0", "--no-join-rounds", "--no-console-alerts"),
                        *("--alert-log", str(home / "alerts.jsonl")),
                    ),
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                    start_new_session=True,
                )
        for member in members:
            _logged(alliance, runs, member, f"scope {scope_id}: delta 1 committed")
        console.print(
            f"[bold]continuous scope[/bold] {scope_id} (threshold 2): each member runs `node run`, which sent its "
            "set and follows its alerts (alert log: <member>/alerts.jsonl)"
        )
        inbox = alliance.home("bank-b") / "inbox"
        part = _write_blacklist(alliance.home("bank-b") / "new-lead", [new], 0)  # Then moved in whole.
        dropped = time.time()
        os.replace(part, inbox / "new-lead.csv")
        _logged(alliance, runs, "bank-b", f"scope {scope_id}: delta 2 committed")
        alert = _wait_for_alert(alliance, runs, scope_id, _canonical(new), since=dropped)
        delay = alert.applied_at.timestamp() - _commit_time(alliance, scope_id, "bank-b", 2)
        console.print(
            f"[bold]alert[/bold]: bank-b dropped a file with one {new['type']} identifier that bank-a alone held; "
            f"bank-b's node imported it and committed its delta; bank-a's node received the coordinator's "
            f"signed {alert.kind.upper()} alert (holders {alert.holder_count}, verified: signature, member, sequence, "
            f"labels) [green]{delay:.2f} s after bank-b's commit reached the coordinator[/green] "
            f"({alert.applied_at.timestamp() - dropped:.2f} s after the file was dropped)"
        )
    finally:
        for run in runs.values():
            if run.poll() is None:
                os.killpg(run.pid, signal.SIGTERM)
        for run in runs.values():
            try:
                run.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(run.pid, signal.SIGKILL)


def _logged(alliance: LocalAlliance, runs: dict[str, subprocess.Popen[bytes]], member: str, text: str) -> None:
    """Wait for ``member``'s node run to log a line with ``text``."""
    log = alliance.home(member) / "node-run.log"
    deadline = time.monotonic() + _STEP_TIMEOUT
    while True:
        if text in log.read_text(encoding="utf-8", errors="replace"):
            return
        if runs[member].poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(encoding="utf-8", errors="replace")[-2000:]
            raise AlliancePsiError(f"{member}: node run did not log {text!r}:\n{tail}")
        time.sleep(0.05)


def _wait_for_alert(
    alliance: LocalAlliance, runs: dict[str, subprocess.Popen[bytes]], scope_id: str, canonical: str, *, since: float
) -> Any:
    """The alert bank-a's node applied about its identifier ``canonical`` in the scope, waiting for it."""
    from alliance_psi.cli._local_alliance import EPOCH
    from alliance_psi.storage import MemberRepository, make_engine
    from alliance_psi.storage.node_alerts import AlertFilter, NodeAlerts

    engine = make_engine(f"sqlite:///{alliance.home('bank-a') / 'node.db'}")
    deadline = time.monotonic() + _STEP_TIMEOUT
    try:
        while True:
            with engine.connect() as conn:
                alerts = [
                    a for a in NodeAlerts(conn).find(AlertFilter(scope=scope_id)) if a.applied_at.timestamp() >= since
                ]
                owners = MemberRepository(conn).identifiers_for_tokens(EPOCH, [a.match_token for a in alerts])
            for alert in alerts:
                own = owners.get(alert.match_token)
                if own is not None and own.canonical == canonical and alert.refused is None:
                    return alert
            if runs["bank-a"].poll() is not None or time.monotonic() > deadline:
                raise AlliancePsiError("bank-a's node did not apply the alert in time (see bank-a/node-run.log)")
            time.sleep(0.05)
    finally:
        engine.dispose()


def _commit_time(alliance: LocalAlliance, scope_id: str, member: str, sequence: int) -> float:
    """When the coordinator committed ``member``'s delta ``sequence`` to the scope (Unix seconds), from
    the audit log in its database (the demo runs the coordinator; an alliance's operator reads it so)."""
    from alliance_psi.storage import AuditLog, make_engine

    engine = make_engine(f"sqlite:///{alliance.root / 'alliance' / 'coordinator.db'}")
    try:
        with engine.connect() as conn:
            log = AuditLog(conn)
            for index in range(log.size() - 1, -1, -1):
                entry = log.entry(index)
                detail = entry.detail if isinstance(entry.detail, dict) else {}
                if (entry.actor, entry.action) == (member, "submission.commit") and (
                    detail.get("round_id"),
                    detail.get("sequence"),
                ) == (scope_id, sequence):
                    return entry.at.timestamp()
    finally:
        engine.dispose()
    raise AlliancePsiError(f"the coordinator's audit log has no commit of {member}'s delta {sequence} to {scope_id}")
