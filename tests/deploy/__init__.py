"""deploy/ and the Dockerfile, validated offline.

Kubernetes manifests against the Kubernetes JSON schemas shipped in kubernetes-validate's wheel
(nothing is downloaded), the KEDA ScaledObject against the fields KEDA's redis scaler reads,
alert rules with promtool (and structurally in Python, so the check never vanishes), and every
metric the dashboard and the alerts use against a live worker's /metrics.
"""
