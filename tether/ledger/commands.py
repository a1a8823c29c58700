"""CLI for ledger integrity: `tether verify` (ledger or digests) and `tether ledger …`.

Kept out of tether/cli.py, which registers these through `add_verify_arguments` and `register`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tether.config import TetherConfig

from .archive import ArchiveError, Archiver, ArchiveTampered, S3Archive, archive_end
from .audit import VerifyResult
from .checkpoint import (
    DEFAULT_KEY_FILE,
    IS_CHECKPOINT,
    Checkpoint,
    Checkpointer,
    KeySource,
    local_verifiers,
    rotate_key,
)
from .signing import SigningKeyError, Verifier, read_verifiers
from .store import Ledger
from .witness import FileWitness, read_witness_file

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
ConfigLoader = Callable[[argparse.Namespace], TetherConfig]
PathLoader = Callable[[argparse.Namespace], Path]


def add_verify_arguments(verify: argparse.ArgumentParser) -> None:
    verify.add_argument(
        "--pubkey",
        action="append",
        type=Path,
        help="File of trusted verifier keys (one per line; repeatable). Default: the local signing key.",
    )
    verify.add_argument(
        "--witness", type=Path, help="Witness file of checkpoints to compare with (catches truncation)."
    )
    verify.add_argument(
        "--digests", type=Path, help="Auditor mode: verify this `tether export digests` file, no raw events."
    )
    verify.add_argument(
        "--archive",
        metavar="S3_URL",
        help="Verify the archive at s3://bucket/prefix and the ledger as one chain.",
    )
    verify.add_argument("--s3-endpoint", help="S3-compatible endpoint URL (default: from the config)")


def _trusted(args: argparse.Namespace, config: ConfigLoader, ledger: Path | None) -> list[Verifier]:
    """The keys given with --pubkey; else the local signing key's (from the config, or beside the ledger)."""
    if args.pubkey:
        return [key for path in args.pubkey for key in read_verifiers(path)]
    if ledger is None:
        raise SigningKeyError("auditor mode needs --pubkey FILE (from `tether ledger pubkey`)")
    reader = Ledger.open_readonly(ledger)
    cfg = config(args)
    for path in (cfg.ledger.signing_key_path(cfg.state_dir), ledger.parent / DEFAULT_KEY_FILE):
        if path.is_file():
            return local_verifiers(path, reader.chain_id)
    if reader._read_one(f"SELECT 1 FROM events WHERE {IS_CHECKPOINT} LIMIT 1"):
        raise SigningKeyError("no local signing key found to check the checkpoints: pass --pubkey FILE")
    return []


def _archive(args: argparse.Namespace, config: ConfigLoader, chain_id: str) -> S3Archive:
    settings = config(args).ledger.archive
    endpoint = args.s3_endpoint or (settings.endpoint_url if settings is not None else None)
    region = settings.region if settings is not None else None
    return S3Archive(args.archive, chain_id, endpoint_url=endpoint, region=region)


class _Progress:
    """`verified N events` on stderr every few seconds of a long run."""

    def __init__(self) -> None:
        self.started = self.last = time.monotonic()

    def __call__(self, count: int) -> None:
        now = time.monotonic()
        if now - self.last >= 2.0:
            rate = count / max(now - self.started, 1e-9)
            print(f"tether verify: {count:,} events verified ({rate:,.0f}/s)…", file=sys.stderr, flush=True)
            self.last = now


def _witness(args: argparse.Namespace, chain_id: str | None) -> list[Checkpoint]:
    return read_witness_file(args.witness, chain_id) if args.witness is not None else []


def describe(result: VerifyResult) -> str:
    if not result.ok:
        when = ""
        if result.time_from or result.time_to:
            when = f" (time {result.time_from or '?'} .. {result.time_to or '?'})"
        return f"ledger TAMPERED: {result.reason} at seq {result.first_bad_seq}{when}: {result.detail}"
    lines = [f"ledger intact: {result.events_checked} events verified"]
    if result.checkpoints_checked or result.witness_checked:
        lines.append(
            f"  {result.checkpoints_checked} signed checkpoints, {result.witness_checked} witness checkpoints"
            f" match; signed through seq {result.signed_through}"
        )
    if result.unsigned_tail:
        lines.append(f"  {result.unsigned_tail} events after the last checkpoint are not yet signed")
    lines.extend(f"  key {key}" for key in result.keys)
    return "\n".join(lines)


def run_verify(args: argparse.Namespace, config: ConfigLoader, ledger_path: PathLoader) -> int:
    from .verify import verify_digests, verify_ledger

    progress = _Progress()
    if args.digests is not None:
        if args.since is not None or args.until is not None or args.ledger is not None:
            raise ValueError("--digests verifies the file as exported: drop --from/--to/--ledger")
        keys = _trusted(args, config, None)
        result = verify_digests(args.digests, keys=keys, witness=_witness(args, None), progress=progress)
    else:
        path = ledger_path(args)
        chain_id = Ledger.open_readonly(path).chain_id
        try:
            result = verify_ledger(
                path,
                since=args.since,
                until=args.until,
                keys=_trusted(args, config, path),
                witness=_witness(args, chain_id),
                progress=progress,
                archive=_archive(args, config, chain_id) if args.archive else None,
            )
        except ArchiveError as exc:
            raise ValueError(str(exc)) from None
    print(json.dumps(result.to_json()) if args.json else describe(result))
    return EXIT_OK if result.ok else EXIT_FAIL


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], config: ConfigLoader) -> None:
    """Add `tether ledger …`."""
    ledger = sub.add_parser("ledger", help="Ledger signing key and checkpoints.", description="Ledger keys.")
    ledger.add_argument("--config", help="tether.yaml (default: $TETHER_CONFIG or ./tether.yaml)")
    ledger.add_argument("--ledger", help="Ledger database (default: from the config)")
    ledger_sub = ledger.add_subparsers(dest="ledger_command", required=True)
    ledger_sub.add_parser("pubkey", help="Print the checkpoint verifier key (C2SP form) for auditors.")
    ledger_sub.add_parser("checkpoint", help="Write a signed checkpoint now.")
    ledger_sub.add_parser("archive", help="Archive sealed segments now (and prune, as configured).")
    ledger_sub.add_parser(
        "rotate-key", help="Replace the signing key; the last checkpoints under the old key name the new one."
    )
    ledger.set_defaults(func=lambda args: run_ledger(args, config))


def _key_source(cfg: TetherConfig, ledger: Path, chain_id: str) -> KeySource:
    """The signing key from the config, else the one beside the ledger (the default layout)."""
    configured = cfg.ledger.signing_key_path(cfg.state_dir)
    for path in (configured, ledger.parent / DEFAULT_KEY_FILE):
        if path.is_file():
            return KeySource(path, chain_id, create=False)
    raise SigningKeyError(f"no signing key at {configured} yet: `tether run` creates it on first start")


def run_ledger(args: argparse.Namespace, config: ConfigLoader) -> int:
    cfg = config(args)
    path = Path(args.ledger) if args.ledger else cfg.effective_ledger_path
    if not path.is_file():
        raise ValueError(f"no ledger at {path} (use --ledger PATH or --config)")
    if args.ledger_command == "pubkey":
        chain_id = Ledger.open_readonly(path).chain_id
        print(_key_source(cfg, path, chain_id).current().verifier.encode())
        return EXIT_OK
    with Ledger(path) as ledger:
        keys = _key_source(cfg, path, ledger.chain_id)
        witness = [FileWitness(cfg.ledger.witness_file)] if cfg.ledger.witness_file is not None else []
        if args.ledger_command == "archive":
            settings = cfg.ledger.archive
            if settings is None:
                raise ValueError("no `ledger.archive` section in the config")
            archive = S3Archive(
                settings.url, ledger.chain_id, endpoint_url=settings.endpoint_url, region=settings.region
            )
            try:
                Archiver(ledger, archive, keys, settings, [sink.name for sink in cfg.sinks]).run_once()
            except (ArchiveError, ArchiveTampered) as exc:
                raise ValueError(str(exc)) from None
            print(f"archived through seq {archive_end(archive) - 1} to {settings.url}")
            return EXIT_OK
        if args.ledger_command == "checkpoint":
            event = Checkpointer(ledger, keys, witnesses=witness).checkpoint_sync()
            print(f"checkpoint at seq {event['seq']} covers {event['detail']['size']} events")
            return EXIT_OK
        old, new = rotate_key(ledger, keys, witness)
    print(f"signing key rotated\n  old {old}\n  new {new}")
    print("give auditors the new key too (`tether ledger pubkey`); --pubkey with the old key still verifies")
    return EXIT_OK
