"""A candidate model's evaluation beside the deployed model's, and the rollout gate.

``microbrain model eval`` writes an :class:`Evaluation` (JSON); the registry keeps it in
the model's card and refuses to roll a candidate out while :func:`gate_reasons` finds a
reason, unless the engineer forces it (the reason and who forced it are recorded).
Both models are measured in the same run on the same data: the figures are only
comparable side by side.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

# scores are rounded to 4 places when written: a tie is a tie, not noise in the 9th digit
_TOLERANCE = 1e-4


class ModelScores(BaseModel):
    """One model's figures on the evaluation set."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    model: str = Field(max_length=300, description="file or registry name@version")
    # box-level, from ultralytics' metrics on the labelled images
    map50: float = Field(ge=0, le=1)
    map50_95: float = Field(ge=0, le=1)
    # event-level, from replaying the scenario clips through the edge pipeline
    event_precision: float = Field(ge=0, le=1)
    event_recall: float = Field(ge=0, le=1)
    events_expected: int = Field(ge=0)
    events_raised: int = Field(ge=0)

    @property
    def event_f1(self) -> float:
        p, r = self.event_precision, self.event_recall
        return 0.0 if p + r == 0 else 2 * p * r / (p + r)


class Evaluation(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    candidate: ModelScores
    deployed: ModelScores
    images: int = Field(ge=0, description="labelled images the mAP is measured on")
    scenarios: int = Field(ge=0, description="scenario clips replayed for the event figures")
    dataset_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class GateReason:
    """One reason the gate gives: a code a console translates, its figures (already
    formatted), and the English sentence the API and the CLI show."""

    code: str  # no_evaluation | map50_below | event_f1_below
    values: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        v = self.values
        if self.code == "no_evaluation":
            return "no evaluation recorded: run `microbrain model eval` and upload its result"
        if self.code == "map50_below":
            return f"mAP50 {v['candidate']} is below the deployed model's {v['deployed']}"
        return (
            f"event-level F1 {v['candidate']} (precision {v['precision']}, recall "
            f"{v['recall']}) is below the deployed model's {v['deployed']} "
            f"(precision {v['deployed_precision']}, recall {v['deployed_recall']})"
        )


def gate_findings(evaluation: Evaluation | None) -> list[GateReason]:
    """Why the candidate may not roll out; empty when it may.

    A candidate must not score below the deployed model on either measure: boxes (mAP50)
    or events (F1 of event precision and recall, so that trading many missed violations
    for a few fewer false alarms does not pass).
    """
    if evaluation is None:
        return [GateReason("no_evaluation")]
    c, d = evaluation.candidate, evaluation.deployed
    reasons = []
    if c.map50 + _TOLERANCE < d.map50:
        reasons.append(
            GateReason("map50_below", {"candidate": f"{c.map50:.3f}", "deployed": f"{d.map50:.3f}"})
        )
    if c.event_f1 + _TOLERANCE < d.event_f1:
        reasons.append(
            GateReason(
                "event_f1_below",
                {
                    "candidate": f"{c.event_f1:.3f}",
                    "precision": f"{c.event_precision:.3f}",
                    "recall": f"{c.event_recall:.3f}",
                    "deployed": f"{d.event_f1:.3f}",
                    "deployed_precision": f"{d.event_precision:.3f}",
                    "deployed_recall": f"{d.event_recall:.3f}",
                },
            )
        )
    return reasons


def gate_reasons(evaluation: Evaluation | None) -> list[str]:
    """:func:`gate_findings` as English sentences (the API's and the CLI's)."""
    return [str(reason) for reason in gate_findings(evaluation)]
