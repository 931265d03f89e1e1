"""Prometheus metrics of one server: requests by status, tokens, queue and cache state, latencies.
Each app has its own registry, so several apps in one process (tests) do not collide."""
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250)


class Metrics:
    def __init__(self, engine):
        self.registry = registry = CollectorRegistry()
        self.requests = Counter("pqv_requests", "Chat completion requests by outcome", ["status"], registry=registry)
        self.prompt_tokens = Counter("pqv_prompt_tokens", "Prompt tokens of finished requests", registry=registry)
        self.generated_tokens = Counter("pqv_generated_tokens", "Generated tokens", registry=registry)
        self.cached_tokens = Counter("pqv_cached_prompt_tokens", "Prompt tokens reused from the prefix cache",
                                     registry=registry)
        self.ttft = Histogram("pqv_time_to_first_token_seconds", "Time to the first streamed output",
                              buckets=LATENCY_BUCKETS, registry=registry)
        self.itl = Histogram("pqv_inter_token_latency_seconds", "Decode time per generated token after the first",
                             buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5), registry=registry)
        self.e2e = Histogram("pqv_request_seconds", "End-to-end request time", buckets=LATENCY_BUCKETS,
                             registry=registry)
        scheduler = engine.scheduler
        Gauge("pqv_running_requests", "Sequences running", registry=registry).set_function(
            lambda: len(scheduler.running))
        Gauge("pqv_waiting_requests", "Sequences waiting", registry=registry).set_function(
            lambda: len(scheduler.waiting))
        Gauge("pqv_kv_blocks_used", "KV cache blocks in use", registry=registry).set_function(
            lambda: scheduler.block_manager.num_used_blocks)
        Gauge("pqv_kv_blocks_total", "KV cache blocks", registry=registry).set(scheduler.block_manager.num_blocks)

    def finished(self, status: str) -> None:
        self.requests.labels(status=status).inc()

    def observe(self, outputs, seconds: float, first_output: float = None) -> None:
        """A finished chat completion (all its choices)."""
        self.finished("ok")
        self.prompt_tokens.inc(outputs[0].usage.prompt_tokens)
        self.cached_tokens.inc(outputs[0].usage.cached_tokens)
        self.e2e.observe(seconds)
        if first_output is not None:
            self.ttft.observe(first_output)
        for out in outputs:
            self.generated_tokens.inc(out.usage.completion_tokens)
            if out.usage.completion_tokens > 1 and out.timings.decode > 0:
                self.itl.observe(out.timings.decode / (out.usage.completion_tokens - 1))

    def render(self) -> bytes:
        return generate_latest(self.registry)
