"""The Grafana dashboard: importable anywhere, and aggregating (with the alerts) as each
metric means.
"""

from __future__ import annotations

import re

from tests.deploy.common import JOB_MATCHER, alert_rules, dashboard, dashboard_exprs, metric_names


def test_dashboard_queries_through_its_datasource_and_namespace_variables() -> None:
    """Importable anywhere: no fixed datasource uid, no job name, any namespace or none."""
    board = dashboard()
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    namespace = variables["namespace"]
    assert namespace["includeAll"] is True
    # "All" must also match series without a namespace label (compose has none).
    assert re.fullmatch(namespace["allValue"], "")
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    via_variable = {"type": "prometheus", "uid": "${datasource}"}
    for panel in board["panels"]:
        assert panel["datasource"] == via_variable, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == via_variable, panel["title"]
            expr = target["expr"]
            assert not JOB_MATCHER.search(expr), expr
            for name in metric_names(expr):
                selector = re.compile(re.escape(name) + r'\{[^}]*namespace=~"\$namespace"')
                assert selector.search(expr), f"{panel['title']}: {name} outside $namespace"
            # Windows follow the scrape interval and the time range, never a fixed duration.
            for window in re.findall(r"\[([^\]]*)\]", expr):
                assert window in ("$__rate_interval", "$__range"), f"{panel['title']}: [{window}]"


# Gauges every worker samples alike (one list): combined with max, never summed.
SHARED_GAUGES = ("vote_queue_depth", "vote_queue_oldest_age_seconds")


def test_dashboard_and_alerts_aggregate_sensibly() -> None:
    exprs = dashboard_exprs() + [rule["expr"] for rule in alert_rules()]
    for expr in exprs:
        for name in metric_names(expr):
            for match in re.finditer(rf"\b{re.escape(name)}\b", expr):
                before = expr[: match.start()].rstrip()
                if name.endswith("_total"):
                    # A counter only means something as a rate or an increase.
                    assert re.search(r"\b(rate|irate|increase)\($", before), expr
                if name in SHARED_GAUGES:
                    # N workers report the same queue: a sum would count it N times.
                    assert not re.search(r"\bsum\b[^()]*\($", before), expr
    assert any("max(vote_queue_depth" in expr for expr in dashboard_exprs())
