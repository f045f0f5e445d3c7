"""The service's counters and latency histogram, written in Prometheus' text format for ``/metrics``.

``frozenasd_requests_total{endpoint,model,status}``, ``frozenasd_request_seconds`` (a histogram per
model of the scoring endpoints), ``frozenasd_errors_total{model,kind}``,
``frozenasd_recordings_scored_total{model}``, ``frozenasd_anomalies_total{model}`` and the queue's
``frozenasd_queue_depth`` / ``frozenasd_queue_limit``. Only served models' names become labels (an
unknown name in a URL counts under ``model=""``), so a client cannot grow the label set.
"""

from __future__ import annotations

import bisect
import threading
from collections import Counter
from collections.abc import Iterable

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{_label(v)}"' for k, v in labels.items()) + "}"


class Metrics:
    """Thread-safe counts of what the service answered; :meth:`render` writes them out."""

    def __init__(self, models: Iterable[str]) -> None:
        self.models = tuple(models)
        self._lock = threading.Lock()
        self._requests: Counter[tuple[str, str, str]] = Counter()
        self._errors: Counter[tuple[str, str]] = Counter()
        self._scored: Counter[str] = Counter({m: 0 for m in self.models})
        self._anomalies: Counter[str] = Counter({m: 0 for m in self.models})
        self._buckets = {m: [0] * (len(BUCKETS) + 1) for m in self.models}  # the last: above every bound
        self._sums = dict.fromkeys(self.models, 0.0)

    def label_of(self, model: str | None) -> str:
        """``model`` when it is served, else ``""``."""
        return model if model in self._buckets else ""

    def request(self, endpoint: str, model: str | None, status: int, seconds: float) -> None:
        """One request answered; its latency counts in the histogram when it was a served model's."""
        model = self.label_of(model)
        with self._lock:
            self._requests[(endpoint, model, str(status))] += 1
            if model and endpoint in ("score", "score-batch"):
                self._buckets[model][bisect.bisect_left(BUCKETS, seconds)] += 1
                self._sums[model] += seconds

    def error(self, model: str | None, kind: str) -> None:
        """One request refused or failed, by kind (``unauthorized``, ``too_large``, ``unscorable`` …)."""
        with self._lock:
            self._errors[(self.label_of(model), kind)] += 1

    def scored(self, model: str, n_scored: int, n_anomalous: int) -> None:
        with self._lock:
            self._scored[model] += n_scored
            self._anomalies[model] += n_anomalous

    def render(self, queue_depth: int, queue_limit: int, calls: dict[bool, int] | None = None) -> str:
        """Every metric in Prometheus' text exposition format (``calls``: scoring calls by whether their
        encoders ran on one thread)."""
        out: list[str] = []

        def head(name: str, kind: str, text: str) -> None:
            out.extend([f"# HELP {name} {text}", f"# TYPE {name} {kind}"])

        with self._lock:
            head(
                "frozenasd_requests_total",
                "counter",
                "HTTP requests answered, by endpoint, model and status.",
            )
            for (endpoint, model, status), n in sorted(self._requests.items()):
                labels = _labels(endpoint=endpoint, model=model, status=status)
                out.append(f"frozenasd_requests_total{labels} {n}")
            head("frozenasd_request_seconds", "histogram", "Time to answer a scoring request, by model.")
            for model in self.models:
                cumulative = 0
                for bound, n in zip((*BUCKETS, float("inf")), self._buckets[model], strict=True):
                    cumulative += n
                    le = "+Inf" if bound == float("inf") else f"{bound:g}"
                    out.append(f"frozenasd_request_seconds_bucket{_labels(model=model, le=le)} {cumulative}")
                out.append(f"frozenasd_request_seconds_sum{_labels(model=model)} {self._sums[model]:.6f}")
                out.append(f"frozenasd_request_seconds_count{_labels(model=model)} {cumulative}")
            head("frozenasd_errors_total", "counter", "Requests refused or failed, by model and kind.")
            for (model, kind), n in sorted(self._errors.items()):
                out.append(f"frozenasd_errors_total{_labels(model=model, kind=kind)} {n}")
            head("frozenasd_recordings_scored_total", "counter", "Recordings scored, by model.")
            out += [
                f"frozenasd_recordings_scored_total{_labels(model=m)} {self._scored[m]}" for m in self.models
            ]
            head("frozenasd_anomalies_total", "counter", "Recordings scored above the threshold, by model.")
            out += [f"frozenasd_anomalies_total{_labels(model=m)} {self._anomalies[m]}" for m in self.models]
        if calls is not None:
            head(
                "frozenasd_scoring_calls_total",
                "counter",
                "Scoring calls (one or more requests each), by encoder threads: all, or one when "
                "requests were scored side by side.",
            )
            for one_thread, threads in ((False, "all"), (True, "one")):
                out.append(f"frozenasd_scoring_calls_total{_labels(threads=threads)} {calls[one_thread]}")
        head("frozenasd_queue_depth", "gauge", "Scoring requests admitted now (waiting or running).")
        out.append(f"frozenasd_queue_depth {queue_depth}")
        head("frozenasd_queue_limit", "gauge", "Scoring requests admitted at most (--queue).")
        out.append(f"frozenasd_queue_limit {queue_limit}")
        return "\n".join(out) + "\n"
