import time
import pytest

@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
@pytest.mark.parametrize("batch", [6, 40])
def test_bench_batches(feed, database_url, batch):
    created = [feed.new_task("example.noop") for _ in range(1200)]
    # warm-up
    feed.apply_batch(created[:batch])
    feed.apply_batch([feed.outcome(e.data, execution_time_ms=3.0) for e in created[:batch]])
    rest = created[batch:]
    batches = []
    for i in range(0, len(rest), batch // 2):
        part = rest[i:i + batch // 2]
        batches.append(part + [feed.outcome(e.data, execution_time_ms=3.0) for e in part])
    t0 = time.process_time()
    for b in batches:
        feed.apply_batch(b)
    dt = time.process_time() - t0
    open("/tmp/mon_bench.txt", "a").write(f"batch {batch}: {dt / len(rest) * 1000:.3f} ms CPU per task\n")
