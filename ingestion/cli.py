"""``python -m ingestion``: the landing jobs, the embedded stack, the simulator and replay."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

from ingestion.config import load_settings
from ingestion.errors import FitLakeError, SourceUnreachable


def _progress_bar(description: str, unit: str):
    """A tqdm bar on a terminal; on a pipe (Airflow logs, CI) a quiet no-op."""
    if not sys.stderr.isatty():
        return None, lambda: None
    from tqdm import tqdm

    bar = tqdm(desc=description, unit=unit, unit_scale=True, leave=False)
    return bar.update, bar.close


def _print_status(status: dict) -> None:
    for key, value in status.items():
        print(f"{key:>8}: {value}")


def cmd_stack(args, settings) -> int:
    from ingestion import stack

    if args.action != "status":
        _print_status({"up": stack.stack_up, "down": stack.stack_down}[args.action](settings))
        return 0
    status = stack.stack_status(settings)
    _print_status(status.lines)
    if not status.broker_up:
        print(
            "error: the Kafka broker is down: `make stack-up` starts the embedded one; an external one "
            "(FITLAKE_KAFKA_BOOTSTRAP) must be started where it runs",
            file=sys.stderr,
        )
        return SourceUnreachable.exit_code
    return 0


def cmd_land(args, settings) -> int:
    if args.source == "sql":
        from ingestion.land_sql import configured_tables, land_sql_table

        jobs = [
            (t.name, lambda t=t, p=None: land_sql_table(settings, t, progress=p)) for t in configured_tables(args.table)
        ]
    else:
        from ingestion.land_kafka import land_kafka_topic

        names = args.topic or list(settings.kafka_topics)
        jobs = [(n, lambda n=n, p=None: land_kafka_topic(settings, n, progress=p)) for n in names]
    summaries = []
    for name, job in jobs:
        update, close = _progress_bar(f"{args.source}:{name}", "rows")
        try:
            summary = job(p=update)
        finally:
            close()
        print(summary.line(), flush=True)
        summaries.append(summary.as_dict())
    if args.json:
        print(json.dumps(summaries, indent=2, default=str))
    return 0


def cmd_simulate(args, settings) -> int:
    from ingestion import simulate

    rates = simulate.SimulationRates(
        redelivered=args.redelivered,
        out_of_order=args.out_of_order,
        late=args.late,
        malformed=args.malformed,
    )
    start = args.start or simulate.default_start(args.days, datetime.now(UTC))
    update, close = _progress_bar("simulate", "events")
    try:
        summary = simulate.simulate(
            settings,
            members=args.members,
            gyms=args.gyms,
            days=args.days,
            seed=args.seed,
            start=start,
            rates=rates,
            progress=update,
        )
    finally:
        close()
    if args.json:  # the summary itself is logged by the simulator
        print(json.dumps(summary.as_dict(), indent=2, default=str))
    return 0


def cmd_replay(args, settings) -> int:
    from ingestion import replay

    update, close = _progress_bar("replay", "rows+msgs")
    try:
        replay.replay(settings, [Path(p) for p in args.paths], progress=update)  # logs what it loaded
    finally:
        close()
    return 0


def _utc(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ingestion", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    stack = commands.add_parser("stack", help="start, stop or report the embedded broker and SQL stand-in")
    stack.add_argument("action", choices=["up", "down", "status"])
    stack.set_defaults(run=cmd_stack)

    land = commands.add_parser("land", help="land one source into the Parquet landing zone")
    land_sources = land.add_subparsers(dest="source", required=True)
    land_sql = land_sources.add_parser("sql", help="incremental extract of the SQL tables")
    land_sql.add_argument("--table", action="append", help="only this table (repeatable)")
    land_kafka = land_sources.add_parser("kafka", help="one bounded micro-batch of the Kafka topics")
    land_kafka.add_argument("--topic", action="append", help="only this topic (repeatable)")
    for sub in (land_sql, land_kafka):
        sub.add_argument("--json", action="store_true", help="also print the run summaries as JSON")
        sub.set_defaults(run=cmd_land)

    sim = commands.add_parser("simulate", help="write simulated source data (SQL rows and Kafka messages)")
    sim.add_argument("--members", type=int, default=200)
    sim.add_argument("--gyms", type=int, default=5)
    sim.add_argument("--days", type=int, default=1)
    sim.add_argument("--seed", type=int, default=42)
    sim.add_argument(
        "--start",
        type=_utc,
        default=None,
        help="UTC start of simulated time (ISO-8601); default: midnight, DAYS+1 days ago",
    )
    sim.add_argument("--redelivered", type=float, default=0.01, help="share of messages produced twice")
    sim.add_argument("--out-of-order", type=float, default=0.02, help="share of messages moved later")
    sim.add_argument("--late", type=float, default=0.005, help="share of messages produced hours late")
    sim.add_argument("--malformed", type=float, default=0.002, help="share of messages made malformed")
    sim.add_argument("--json", action="store_true", help="also print the summary as JSON")
    sim.set_defaults(run=cmd_simulate)

    rep = commands.add_parser("replay", help="load recorded data sets (CSV per table, JSON-lines envelopes)")
    rep.add_argument("paths", nargs="+", help="files or directories")
    rep.set_defaults(run=cmd_replay)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = load_settings()
        return args.run(args, settings)
    except FitLakeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted: nothing partial was published; rerun to continue", file=sys.stderr)
        return 130
