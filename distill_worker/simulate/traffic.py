"""The simulation's HTTP side: customers on the widget API, the operator on the operator API.

One `Observation` per customer message: what they meant, what the model said, who answered,
how long it took. Failures are observations too (status != "ok"), never exceptions, so a run
records the moments the system did not answer.
"""

from __future__ import annotations

import datetime as dt
import random
import time
from dataclasses import asdict, dataclass
from typing import Any, Literal

import httpx

RATING_RULE = (
    "thumbs up when the reply's intent equals the customer's true intent (the data set's "
    "label), thumbs down otherwise, a handoff included"
)


def rate(true_intent: str, predicted: str | None) -> Literal["up", "down"]:
    """The simulated customers' rating rule (`RATING_RULE`)."""
    return "up" if predicted is not None and predicted == true_intent else "down"


@dataclass(frozen=True)
class Observation:
    t: float  # seconds since the simulation started
    phase: str  # "before" or "after" the shift
    intent: str  # the true intent
    predicted: str | None
    model_version: str | None
    latency_ms: float  # as the customer saw it (HTTP round trip)
    server_latency_ms: float | None  # as the API stored it
    handoff: bool
    status: str  # "ok", or the error code / HTTP status
    labelled: bool  # the operator labelled this reply

    @property
    def correct(self) -> bool:
        return self.status == "ok" and self.predicted == self.intent

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "correct": self.correct}


class SimulationError(RuntimeError):
    """The system under test refused the simulation's own setup (login, bad URL)."""


class Traffic:
    """Customers and one operator against a running API at `base_url`."""

    def __init__(
        self,
        base_url: str,
        *,
        operator_email: str,
        operator_password: str,
        label_share: float,
        rng: random.Random,
        timeout_s: float = 30.0,
    ) -> None:
        if not 0.0 <= label_share <= 1.0:
            raise ValueError("label_share is a fraction between 0 and 1")
        self.http = httpx.Client(base_url=base_url, timeout=timeout_s)
        self.label_share = label_share
        self.rng = rng
        response = self.http.post(
            "/v1/operator/login", json={"email": operator_email, "password": operator_password}
        )
        if response.status_code != 200:
            raise SimulationError(
                f"the operator login failed ({response.status_code}): {response.text[:200]}; "
                "check --operator-email / CHATDISTILL_SIM_OPERATOR_PASSWORD"
            )
        self.operator = {"Authorization": f"Bearer {response.json()['access_token']}"}

    def close(self) -> None:
        self.http.close()

    def customer_turn(self, text: str, intent: str, *, phase: str, t0: float) -> Observation:
        """A new conversation with one message; rated by the rule; maybe labelled."""
        start = time.monotonic()
        started = self.http.post("/v1/widget/conversations", json={"site": "simulation"})
        if started.status_code != 201:
            return self._failed(start, t0, phase, intent, _code(started))
        conversation = started.json()
        base = f"/v1/widget/conversations/{conversation['conversation_id']}"
        customer = {"Authorization": f"Bearer {conversation['token']}"}
        sent = time.monotonic()
        response = self.http.post(f"{base}/messages", json={"text": text}, headers=customer)
        latency_ms = (time.monotonic() - sent) * 1000.0
        if response.status_code != 201 or response.json().get("reply") is None:
            return self._failed(start, t0, phase, intent, _code(response))
        reply = response.json()["reply"]
        predicted = reply.get("intent")
        self.http.post(
            f"{base}/messages/{reply['id']}/rating",
            json={"thumbs": rate(intent, predicted)},
            headers=customer,
        ).raise_for_status()
        labelled = self.rng.random() < self.label_share
        if labelled:
            self.http.post(
                f"/v1/operator/messages/{reply['id']}/intent",
                json={"intent": intent, "note": "simulated operator"},
                headers=self.operator,
            ).raise_for_status()
        return Observation(
            t=start - t0, phase=phase, intent=intent, predicted=predicted,
            model_version=reply.get("model_version"), latency_ms=latency_ms,
            server_latency_ms=reply.get("latency_ms"), handoff=bool(reply.get("handoff")),
            status="ok", labelled=labelled,
        )  # fmt: skip

    def timeline(self, wall0: dt.datetime) -> dict[str, list[dict[str, Any]]]:
        """Runs and production moves, with times as seconds since `wall0` (the start)."""
        runs = self.http.get("/v1/operator/runs", params={"limit": 200}, headers=self.operator)
        history = self.http.get("/v1/operator/models/history", headers=self.operator)
        runs.raise_for_status()
        history.raise_for_status()

        def since(value: str | None) -> float | None:
            if value is None:
                return None
            return (dt.datetime.fromisoformat(value) - wall0).total_seconds()

        return {
            "runs": [
                {
                    "id": r["id"], "trigger": r["trigger"], "status": r["status"],
                    "stage": r["stage"], "candidate": r["candidate_version_id"],
                    "error": r["error"], "opened": since(r["created_at"]),
                    "finished": since(r["finished_at"]),
                }
                for r in reversed(runs.json())
            ],
            "promotions": [
                {"version": e["model_version_id"], "previous": e["previous_version_id"],
                 "reason": e["reason"], "at": since(e["at"])}
                for e in reversed(history.json())
            ],
        }  # fmt: skip

    def _failed(self, start: float, t0: float, phase: str, intent: str, status: str) -> Observation:
        return Observation(
            t=start - t0, phase=phase, intent=intent, predicted=None, model_version=None,
            latency_ms=(time.monotonic() - start) * 1000.0, server_latency_ms=None,
            handoff=False, status=status, labelled=False,
        )  # fmt: skip


def _code(response: httpx.Response) -> str:
    try:
        code = response.json().get("error", {}).get("code")
    except ValueError:
        code = None
    return str(code or response.status_code)
