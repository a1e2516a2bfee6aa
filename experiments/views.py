"""Links into MLflow's UI: the runs page of an experiment in the model-training view, and the
saved view of one sweep's trials that the link opens."""

from __future__ import annotations

import json
import time
from typing import Any

from experiments.store import KIND_TAG, safe_key

__all__ = ["UI_PORT", "VIEW_TAG", "latest_view", "runs_page", "save_view", "sweep_view",
           "view_key"]

VIEW_TAG = "mlflow.sharedViewState."  # MLflow's saved runs-page views: one experiment tag each
UI_PORT = 5000  # neon-search ui's default


def view_key(parent_run_id: str) -> str:
    """The id of a sweep's saved view in MLflow's runs page (``viewStateShareKey``)."""
    return f"neon-search-{parent_run_id}"


def runs_page(exp_id: str, view: str | None = None) -> str:
    """The UI path of an experiment's runs page in the model-training view (the
    ``workflowType`` parameter picks it in MLflow 3.x), opening the saved view ``view``."""
    query = "workflowType=machine_learning" + (f"&viewStateShareKey={view}" if view else "")
    return f"#/experiments/{exp_id}/runs?{query}"


def sweep_view(sweep: Any, parent_run_id: str) -> dict[str, Any]:
    """The runs-page state of one sweep, as MLflow's saved views hold it: the sweep's trials,
    best first (MLflow lists runs sorted by a metric flat, not nested under the sweep's
    run), with columns objective, state, epochs reached (``rung``), cell and tuned params."""
    objective = f"metrics.`{safe_key(sweep.objective.metric)}`"
    params = dict.fromkeys(["numerics", "backend", *(safe_key(n) for n in sweep.space.names)])
    columns = [objective, "tags.`state`", "tags.`rung`", *(f"params.`{p}`" for p in params)]
    return {
        "searchFilter": f"tags.`mlflow.parentRunId` = '{parent_run_id}'",
        "orderByKey": objective,
        "orderByAsc": sweep.objective.mode == "min",
        "selectedColumns": columns,
        # MLflow's own column ids: row selection, run name, created (with the status icon)
        "columnOrder": ["1", "attributes.`Run Name`", "runDateAndNestInfo", "duration",
                        *columns],
        "columnWidths": {c: max(90, 7 * len(c.split("`")[1]) + 40) for c in columns},
        "runsHiddenMode": "SHOW_ALL",
    }


def save_view(client: Any, exp_id: str, key: str, name: str, state: dict[str, Any]) -> None:
    """Store ``state`` as the saved view ``key`` of the experiment (listed under Views)."""
    now = int(time.time() * 1000)
    client.set_experiment_tag(exp_id, VIEW_TAG + key, json.dumps(
        {"name": name, "createdAt": now, "updatedAt": now, "state": json.dumps(state)}))


def latest_view(client: Any, exp: Any) -> str | None:
    """The saved view of the experiment's latest sweep, if it has one."""
    runs = client.search_runs([exp.experiment_id], f"tags.`{KIND_TAG}` = 'sweep'",
                              max_results=1, order_by=["attributes.start_time DESC"])
    key = view_key(runs[0].info.run_id) if runs else None
    return key if key and VIEW_TAG + key in (exp.tags or {}) else None
