"""Anomaly detection: rules per (pipeline, metric), evaluation of successful executions
against their baseline, flags, and the jobs that run it (see `evaluation`)."""

from watcher.checks.anomalies.detector import Detector, catch_up
from watcher.checks.anomalies.evaluation import evaluate_now
from watcher.checks.anomalies.models import DetectionResult, Rule
from watcher.checks.anomalies.routes import router, setup

__all__ = ["DetectionResult", "Detector", "Rule", "catch_up", "evaluate_now", "router", "setup"]
