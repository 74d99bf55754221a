"""Per-queue Prometheus ports: base + the queue's index, so the dev stack, compose
and the Helm chart agree on where each worker serves its metrics."""
from stratmaster import queues


def metrics_port_for(queue: str, base: int) -> int:
    return base + (queues.ALL.index(queue) if queue in queues.ALL else len(queues.ALL))
