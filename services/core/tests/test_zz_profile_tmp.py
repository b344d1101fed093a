import cProfile, pstats, time, io
import pytest

@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_profile_post(client, auth, database_url):
    headers = auth.headers()
    for _ in range(50):
        client.post("/tasks/", json={"task_type": "example.noop"}, headers=headers)
    n = 1000
    pr = cProfile.Profile(time.process_time)
    t0 = time.process_time()
    pr.enable()
    for _ in range(n):
        r = client.post("/tasks/", json={"task_type": "example.noop"}, headers=headers)
        assert r.status_code == 201
    pr.disable()
    t1 = time.process_time()
    open("/tmp/cpu.txt","a").write(f"\nCPU per POST: {(t1-t0)/n*1000:.2f} ms (profiled)")
    s = io.StringIO()
    pstats.Stats(pr, stream=s).sort_stats("cumulative").print_stats(60)
    open("/tmp/prof_post.txt","w").write(s.getvalue())
    pr.dump_stats("/tmp/prof_post.pstats")
    t0 = time.process_time()
    for _ in range(n):
        client.post("/tasks/", json={"task_type": "example.noop"}, headers=headers)
    open("/tmp/cpu.txt","a").write(f"CPU per POST: {(time.process_time()-t0)/n*1000:.2f} ms (unprofiled)")
