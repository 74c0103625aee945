"""Replay one case of the conformance suite: ``python -m invariants.conformance
package.module:function CASE.json [--json]``.

Runs the trainer on the case file (the schema of `python -m invariants examine`),
validates its output and judges it with every conformance property, as the pytest
run did. Prints one line per property (or one JSON object); exits 0 when every
property that applies passed, 1 when one failed, 2 on bad input (one ``error:``
line on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys

from invariants.trainer import (
    Budget,
    TrainerError,
    TrainerSpecError,
    Unsupported,
    load_trainer,
    run_trainer,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m invariants.conformance",
        description="Run a trainer on one case file and judge it with every "
        "conformance property.",
    )
    parser.add_argument("trainer", help="package.module:function")
    parser.add_argument("case", metavar="CASE.json", help="a case file")
    parser.add_argument("--json", action="store_true", help="one JSON object")
    args = parser.parse_args(argv)

    from invariants.casefile import Case, CaseError
    from invariants.checkpoints import Judgement
    from invariants.conformance._properties import judge_case

    try:
        trainer = load_trainer(args.trainer)
        with open(args.case, encoding="utf-8") as handle:
            case = Case.from_dict(json.load(handle))
    except (TrainerSpecError, CaseError, OSError, ValueError) as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    try:
        checkpoints = run_trainer(trainer, case, Budget())
    except Unsupported as exc:
        print(f"error: the trainer declined the case: {exc}", file=sys.stderr)
        return 2
    except TrainerError as exc:
        print(f"FAIL  trainer        {exc}")
        return 1
    checks = judge_case(case, checkpoints, trainer.spec, trainer.claims)
    judgement = Judgement(tuple(checks), *checkpoints.thetas.shape)
    if args.json:
        print(json.dumps(judgement.to_json()))
    else:
        print(f"trainer {trainer.spec!r}: {trainer.claims.describe()}")
        print("\n".join(judgement.summary_lines()))
    return 0 if judgement.passed else 1


if __name__ == "__main__":
    sys.exit(main())
