"""Run a program for a decision: argv list, never a shell."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from typing import Any

from monitor.config import CommandActionConfig
from triggers.base import Action, DeliveryError, DeliveryResult


class Command(Action):
    """Runs ``argv`` with the decision JSON on stdin and the idempotency key in
    ``DRIFTD_IDEMPOTENCY_KEY``; exit 0 is success. The program is executed
    directly (``shell=False``), so nothing in a decision can inject shell
    syntax. Blocks up to ``timeout_seconds`` (then the program is killed and
    the attempt fails); stdout and stderr are kept in the attempt log.
    """

    def __init__(self, config: CommandActionConfig) -> None:
        self._take_policy(config)
        self.argv = list(config.argv)
        self._timeout = config.timeout_seconds

    def deliver(
        self, decision: Mapping[str, Any], idempotency_key: str, attempt: int
    ) -> DeliveryResult:
        env = {
            **os.environ,
            "DRIFTD_IDEMPOTENCY_KEY": idempotency_key,
            "DRIFTD_ATTEMPT": str(attempt),
        }
        try:
            done = subprocess.run(
                self.argv,
                input=json.dumps(decision, sort_keys=True).encode(),
                capture_output=True,
                timeout=self._timeout,
                env=env,
                shell=False,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise DeliveryError(f"{self.argv[0]}: timed out after {self._timeout:g}s") from None
        except OSError as exc:
            raise DeliveryError(f"{self.argv[0]}: {exc.strerror or exc}", retryable=False) from None
        out = done.stdout.decode("utf-8", "replace")[-2000:]
        err = done.stderr.decode("utf-8", "replace")[-2000:]
        if done.returncode != 0:
            raise DeliveryError(f"{self.argv[0]} exited {done.returncode}: {err.strip()[-500:]}")
        return DeliveryResult(f"exit 0: {out.strip()[-500:]}", {"stdout": out, "stderr": err})
