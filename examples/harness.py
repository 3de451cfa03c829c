"""Tutorial: a harness that survives a crash (README section of the same name).

Run it from any directory::

    python examples/harness.py              # journal in a new temporary directory
    python examples/harness.py order.rcj    # or at a path of yours (must not exist yet)

An agent-style loop works through a plan of four side effects for one order.
Before each effect it journals an ``EffectIntent``, then performs the effect,
then journals an ``EffectResult``. The tutorial then plays out a crash:

1. The worker runs as a child process and kills itself with SIGKILL right
   after journaling the intent of ``charge-card``, a payment whose API takes
   no idempotency key.
2. A new worker replays the journal: the effects with results are done and
   are skipped; ``charge-card`` has an intent and no result, so it may or may
   not have happened. Retrying it could charge the card twice, so the worker
   refuses, reports it and stops without writing anything (exit code 3).
3. An operator checks the payment provider and journals what really
   happened (``--resolve charge-card not_performed``).
4. A new worker replays again: resuming is allowed now, so it skips the done
   effects, runs ``charge-card`` (the operator found it never ran) and
   ``send-receipt``, and seals the run as completed.

Each effect "happens" by appending a line to ``<journal>.effects.log``, which
stands for the outside world (the API, the payment provider, the mail
server): at the end every effect appears there exactly once.

The worker and the operator step are this same file with other arguments:
``--worker JOURNAL [--crash-in EFFECT]`` and ``--resolve EFFECT STATUS JOURNAL``.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import replaycore
from replaycore import EffectIntent, EffectResult, JournalRecord, JournalWriter, RunLifecycle
from replaycore.records import Payload

RUN_ID = "order-1001"
# The agent's plan: (effect_id, effect_kind, whether the effect's API takes an idempotency key).
PLAN = [
    ("fetch-order", "http.get", True),
    ("reserve-stock", "inventory.reserve", True),
    ("charge-card", "payment", False),  # this payment API has no idempotency keys
    ("send-receipt", "email", True),
]
EXIT_REPAIR_NEEDED = 3
HERE = Path(__file__).resolve()


def say(message: str) -> None:
    # flush: a process killed with SIGKILL loses whatever it had buffered
    print(message, flush=True)


def effects_log(journal: Path) -> Path:
    """The stand-in for the outside world: one line per effect performed."""
    return journal.with_name(journal.name + ".effects.log")


def perform(journal: Path, effect_id: str, key: str | None) -> str:
    """Perform the side effect itself (here: record it in the outside world).

    Like a real API that takes idempotency keys, the outside world does
    nothing for a key it has seen: retrying a keyed effect is safe.
    """
    log = effects_log(journal)
    seen = log.read_text().split() if log.exists() else []
    if key is None or key not in seen:
        with log.open("a") as world:
            world.write(f"{effect_id} {key or '-'}\n")
    return "succeeded"


def append(writer: JournalWriter, payload: Payload) -> None:
    """Journal one record; ``fsync="always"`` makes it durable before this returns."""
    seq = writer.last_journal_seq + 1
    writer.append(
        JournalRecord(
            record_id=f"{RUN_ID}/{seq:04d}", journal_seq=seq, run_id=RUN_ID, payload=payload
        )
    )


# -- the worker: replay, refuse what is unsafe, do the rest ----------------------------------


def worker(journal: Path, crash_in: str | None) -> int:
    done: dict[str, str] = {}  # effect_id -> status of its last result
    fresh = not journal.exists()
    if not fresh:
        result = replaycore.replay(journal)  # resume mode: may this run go on?
        say(
            f"  replay: {result.records_applied} records, status={result.status}, "
            f"resume_allowed={result.resume_allowed}"
        )
        if result.terminal_status is not None:
            say(f"  the run is {result.terminal_status} already: nothing to do")
            return 0
        for record in replaycore.read_journal(journal):
            if isinstance(record.payload, EffectResult):
                done[record.payload.effect_id] = record.payload.status
        finished = [effect_id for effect_id, status in done.items() if status == "succeeded"]
        say(f"  done already: {', '.join(finished) or 'nothing'}")
        # An effect with an intent and no result may have happened. With an
        # idempotency key it is safe to retry (retry_allowed); without one it is not.
        retryable = {
            e.intent_record_id for e in result.unsafe_pending_side_effects if e.retry_allowed
        }
        if any(repair.record_id not in retryable for repair in result.repair_needed):
            for effect in result.unsafe_pending_side_effects:
                if not effect.retry_allowed:
                    say(
                        f"  UNSAFE {effect.effect_id} (intent {effect.intent_record_id}): "
                        f"{effect.reason}; retry_allowed={effect.retry_allowed}"
                    )
                    say(f"  refusing to re-run {effect.effect_id}: it may have happened already")
            say("  stopped: repair needed, nothing written")
            return EXIT_REPAIR_NEEDED
        for effect in result.unsafe_pending_side_effects:  # all retry_allowed by now
            say(f"  retry {effect.effect_id}: its idempotency key makes that safe")

    with JournalWriter(journal, fsync="always") as writer:
        if fresh:
            append(writer, RunLifecycle(status="running"))
        for effect_id, kind, has_key in PLAN:
            status = done.get(effect_id)
            if status == "succeeded":
                say(f"  skip {effect_id}: done before the crash")
                continue
            if status is not None:
                say(f"  {effect_id}: journaled as {status!r}, so it runs again")
            key = replaycore.derive_key(RUN_ID, effect_id) if has_key else None
            append(writer, EffectIntent(effect_id=effect_id, effect_kind=kind, idempotency_key=key))
            if effect_id == crash_in:
                say(f"  {effect_id}: intent journaled -- the worker dies here (SIGKILL)")
                os.kill(os.getpid(), signal.SIGKILL)
            status = perform(journal, effect_id, key)
            append(writer, EffectResult(effect_id=effect_id, status=status))
            say(f"  {effect_id}: intent journaled, performed, result journaled ({status})")
        append(writer, RunLifecycle(status="completed"))
    say("  run completed")
    return 0


# -- the operator step: journal what really happened to an unsafe effect --------------------


def resolve(journal: Path, effect_id: str, status: str) -> int:
    unsafe = {e.effect_id for e in replaycore.replay(journal).unsafe_pending_side_effects}
    if effect_id not in unsafe:
        say(f"  {effect_id} is not an unsafe pending effect of {journal}")
        return 2
    with JournalWriter(journal, fsync="always") as writer:
        append(writer, EffectResult(effect_id=effect_id, status=status))
    say(f"  operator: journaled EffectResult(effect_id={effect_id!r}, status={status!r})")
    return 0


# -- the tutorial: run the steps above one after another -------------------------------------


def run(*args: str) -> int:
    """Run this file again as a child process (a fresh worker, or the operator)."""
    return subprocess.run([sys.executable, str(HERE), *args], check=False).returncode


def tutorial(journal: Path) -> int:
    if journal.exists():
        say(f"{journal} exists already; give the path of a new journal")
        return 2
    say(f"journal: {journal}")

    say("\n1. first run: journal each intent, perform the effect, journal its result")
    code = run("--worker", str(journal), "--crash-in", "charge-card")
    if code != -signal.SIGKILL:
        say(f"expected the worker to be killed by SIGKILL, it exited {code}")
        return 1
    say("  worker killed by SIGKILL in the middle of charge-card")

    say("\n2. restart: replay, skip what is done, refuse what is unsafe")
    code = run("--worker", str(journal))
    say(f"  worker exited {code} (repair needed)")
    if code != EXIT_REPAIR_NEEDED:
        return 1

    say("\n3. operator: check the payment provider, journal what happened")
    world = effects_log(journal).read_text().split()
    charged = "charge-card" in world
    say(f"  payment provider: {'a' if charged else 'no'} charge for {RUN_ID}")
    status = "succeeded" if charged else "not_performed"
    say(f"  $ python {os.path.relpath(HERE)} --resolve charge-card {status} {journal}")
    if run("--resolve", "charge-card", status, str(journal)) != 0:
        return 1

    say("\n4. restart again: the run resumes")
    if run("--worker", str(journal)) != 0:
        return 1

    say("\n5. check: the journal is complete, and every effect happened once")
    result = replaycore.replay(journal)
    say(f"  replay: status={result.status}, terminal_status={result.terminal_status}")
    counts = Counter(effects_log(journal).read_text().split()[::2])
    say("  effects performed: " + ", ".join(f"{e} x{counts[e]}" for e, _, _ in PLAN))
    say(f"  see for yourself: replaycore replay {journal}")
    ok = result.status == "complete" and all(counts[e] == 1 for e, _, _ in PLAN)
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("journal", nargs="?", type=Path, help="journal path (.rcj or .jsonl)")
    parser.add_argument("--worker", action="store_true", help="run one worker on the journal")
    parser.add_argument("--crash-in", metavar="EFFECT", help="die right after EFFECT's intent")
    parser.add_argument("--resolve", nargs=2, metavar=("EFFECT", "STATUS"), help="operator step")
    args = parser.parse_args(argv)
    if args.worker or args.resolve:
        if args.journal is None:
            parser.error("--worker and --resolve need a journal path")
        if args.resolve:
            return resolve(args.journal, *args.resolve)
        return worker(args.journal, args.crash_in)
    journal = args.journal or Path(tempfile.mkdtemp(prefix="replaycore-harness-")) / f"{RUN_ID}.rcj"
    return tutorial(journal.resolve())


if __name__ == "__main__":
    sys.exit(main())
