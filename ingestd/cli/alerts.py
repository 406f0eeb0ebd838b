"""``ingestd alerts``: ``list`` (what is firing: since when, last sent, summary), ``test`` (a
test alert through every channel) and ``check`` (evaluate now and send what is due, what
the daemon does every ``alerting.interval``)."""

from __future__ import annotations

from datetime import tzinfo

import click

from ..domain.alerts import Alert
from ..errors import DiscrepancyFound
from ..usecases.alerts import evaluate, list_alerts, send_test
from .base import (
    AppContext,
    cli,
    console,
    esc,
    json_option,
    pass_app,
    print_json,
    print_rows,
    shown_time,
)


@cli.group()
def alerts() -> None:
    """Alerts: the log, and each [[alerts]] channel (webhook, smtp)."""


def _row(alert: Alert, tz: tzinfo) -> list[str]:
    return [alert.key, str(alert.severity), str(alert.state), shown_time(alert.since, tz),
            shown_time(alert.last_sent, tz, none="-"),
            ", ".join(sorted(alert.owed)) or "-", alert.summary]


@alerts.command("list")
@click.option("--all", "include_resolved", is_flag=True, help="Resolved alerts too.")
@json_option
@pass_app
def alerts_list(app: AppContext, include_resolved: bool, as_json: bool) -> None:
    """What is firing: each alert's key, since when, when it was last sent, the channels that
    still owe it, and its summary, in the station's zone (``--json``: UTC)."""
    found = list_alerts(app.station(read_only=True), include_resolved=include_resolved)
    if as_json:
        print_json({"alerts": [a.to_json() for a in found]})
        return
    if not found:
        console.print("no alert is firing" if not include_resolved else "no alerts")
        return
    print_rows(["alert", "severity", "state", "since", "last sent", "undelivered", "summary"],
               [[_row(a, app.tz) for a in found]])


@alerts.command("test")
@json_option
@pass_app
def alerts_test(app: AppContext, as_json: bool) -> None:
    """Send a test alert through every channel (the log and each [[alerts]] table).

    Exit status 1 when a channel failed; it is named, with the reason.
    """
    results = send_test(app.station(read_only=True))
    if as_json:
        print_json({"ok": all(v is None for v in results.values()),
                    "channels": [{"channel": name, "ok": why is None, "error": why}
                                 for name, why in results.items()]})
    else:
        for name, why in results.items():
            if why is None:
                console.print(f"channel {esc(name)}: [green]delivered[/]")
            else:
                console.print(f"channel {esc(name)}: [bold red]FAILED[/]: {esc(why)}")
    if any(why is not None for why in results.values()):
        raise click.exceptions.Exit(DiscrepancyFound.exit_code)


@alerts.command("check")
@json_option
@pass_app
def alerts_check(app: AppContext, as_json: bool) -> None:
    """Evaluate the alert conditions now and send what is due (new, repeated, resolved, owed
    to a channel that failed before), as the daemon does every alerting.interval.

    Exit status 1 when a notice could not be delivered through some channel.
    """
    report = evaluate(app.station())
    if as_json:
        print_json(report.to_json())
    else:
        console.print(esc(report.summary()))
        for sent in report.sent:
            again = " (repeat)" if sent.repeat else ""
            failed = "".join(f"; [red]{esc(c)} failed[/]: {esc(why)}"
                             for c, why in sent.failed.items())
            console.print(f"  {esc(sent.alert.key)} {sent.alert.state}{again}: "
                          f"{esc(sent.alert.summary)}{failed}")
    if not report.ok:
        raise click.exceptions.Exit(DiscrepancyFound.exit_code)
