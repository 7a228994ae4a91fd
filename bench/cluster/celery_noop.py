"""A no-op Celery task on Redis, and a client that submits N of them one by one (.delay())
and gathers every result: the per-task rate Celery users get without `chunks`.

Worker: celery -A celery_noop worker --pool=prefork -c W    (CELERY_REDIS=redis://host:port)
Client: python celery_noop.py N                              prints N, seconds, tasks/s
"""
import os
import sys
import time

from celery import Celery

base = os.environ.get("CELERY_REDIS", "redis://127.0.0.1:6379")
app = Celery("celery_noop", broker=base + "/1", backend=base + "/2")
app.conf.update(worker_prefetch_multiplier=4, task_acks_late=False, result_expires=600)


@app.task(name="celery_noop.noop")
def noop(x):
    return None


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    noop.delay(0).get(timeout=60)  # warm: the worker is up and connected
    t0 = time.perf_counter()
    results = [noop.delay(i) for i in range(n)]
    for r in results:
        r.get(timeout=600)
    secs = time.perf_counter() - t0
    print(f"{n} tasks in {secs:.3f} s: {n / secs:.0f} tasks/s")
