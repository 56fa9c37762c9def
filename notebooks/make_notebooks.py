"""Write notebooks/quickstart.ipynb and notebooks/failover.ipynb, without outputs.

The notebooks are generated so that they stay reviewable as code and never carry outputs
into git; edit the cells here and run ``python notebooks/make_notebooks.py``.
"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parent


def md(text: str) -> nbformat.NotebookNode:
    return new_markdown_cell(text.strip("\n"))


def code(text: str) -> nbformat.NotebookNode:
    return new_code_cell(text.strip("\n"))


def save(name: str, cells: list[nbformat.NotebookNode]) -> None:
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{name}-{i:02d}"
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    nbformat.validate(nb)
    nbformat.write(nb, ROOT / f"{name}.ipynb")


quickstart = [
    md("""
# raftsql quickstart

This notebook starts a real local raftsql cluster (three node processes on loopback, data
in a temporary directory), creates a table, loads a CSV with pandas through the SQLAlchemy
dialect, queries it with the DB-API and with `pandas.read_sql`, and plots the result.
The last cell stops the cluster and removes the directory.
"""),
    code("""
import shutil
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import raftsql
import raftsql.sqlalchemy
from raftsql.cluster import LocalCluster
"""),
    md("## Start a 3-node cluster"),
    code("""
workdir = Path(tempfile.mkdtemp(prefix="raftsql-quickstart-"))
cluster = LocalCluster(directory=workdir / "cluster", n=3).start()
print("nodes:", cluster.addresses())
print("leader: node", cluster.wait_for_leader())
print("url:", cluster.url())
"""),
    md("""
## DB-API: create a table and write

`raftsql.connect` works like `sqlite3.connect`. With `autocommit=True` every statement is
its own atomic, replicated, exactly-once request.
"""),
    code("""
conn = raftsql.connect(cluster.addresses(), autocommit=True)
conn.execute(
    "CREATE TABLE cities (name TEXT PRIMARY KEY, country TEXT NOT NULL, population INTEGER)"
)
conn.executemany(
    "INSERT INTO cities VALUES (?, ?, ?)",
    [
        ("Oslo", "Norway", 709_000),
        ("Lisbon", "Portugal", 545_000),
        ("Cairo", "Egypt", 10_100_000),
        ("Lima", "Peru", 10_000_000),
        ("Hanoi", "Vietnam", 8_400_000),
        ("Perth", "Australia", 2_100_000),
    ],
)
conn.execute("SELECT count(*) FROM cities").fetchone()
"""),
    md("## Generate a small CSV and load it with pandas"),
    code("""
rng = np.random.default_rng(42)
climate = {"Oslo": 6, "Lisbon": 17, "Cairo": 22, "Lima": 19, "Hanoi": 24, "Perth": 18}
names = rng.choice(list(climate), size=200)
readings = pd.DataFrame(
    {
        "day": pd.date_range("2024-01-01", periods=200, freq="D").strftime("%Y-%m-%d"),
        "city": names,
        "temperature": [round(climate[c] + rng.normal(0, 4), 1) for c in names],
    }
)
csv_path = workdir / "temperatures.csv"
readings.to_csv(csv_path, index=False)
print(csv_path.read_text().splitlines()[:4])
"""),
    code("""
engine = raftsql.sqlalchemy.create_engine(cluster.url())
df = pd.read_csv(csv_path)
df.to_sql("temperatures", engine, index=False)
len(df)
"""),
    md("## Query with the DB-API"),
    code("""
cur = conn.cursor()
cur.execute(
    "SELECT city, count(*), round(avg(temperature), 1) FROM temperatures "
    "GROUP BY city ORDER BY city"
)
print([d[0] for d in cur.description])
rows = cur.fetchall()
for row in rows:
    print(row)
assert sum(r[1] for r in rows) == 200
"""),
    md("## Query with pandas (a join across both tables)"),
    code("""
summary = pd.read_sql(
    \"\"\"
    SELECT t.city, c.country, round(avg(t.temperature), 1) AS mean_temp,
           min(t.temperature) AS min_temp, max(t.temperature) AS max_temp
    FROM temperatures t JOIN cities c ON c.name = t.city
    GROUP BY t.city, c.country
    ORDER BY mean_temp DESC
    \"\"\",
    engine,
)
assert len(summary) == len(climate)
summary
"""),
    md("""
## Rich results: `conn.query(...)`

`conn.query(sql, params)` returns a `raftsql.ResultSet`: it renders as an HTML table
(column types in the header, at most 50 rows shown) and `.df()` turns it into a pandas
DataFrame.
"""),
    code("""
big = conn.query("SELECT name, country, population FROM cities WHERE population > ?", (1_000_000,))
assert len(big) == 4 and big.columns == ["name", "country", "population"]
big
"""),
    code("""
big_df = big.df()
assert big_df["population"].sum() == 30_600_000
big_df.sort_values("population", ascending=False)
"""),
    md("""
## SQL cells with JupySQL

[JupySQL](https://jupysql.ploomber.io) works with the SQLAlchemy dialect: connect with a
URL (`%sql raftsql:///?hosts=h1:p1,h2:p2`) or an existing engine (`%sql engine`).
"""),
    code("""
import os

os.environ.setdefault("PLOOMBER_STATS_ENABLED", "false")  # no JupySQL telemetry
%load_ext sql
%sql engine
"""),
    code("""
%sql SELECT city, count(*) AS readings FROM temperatures GROUP BY city ORDER BY city
"""),
    code("""
hot = %sql SELECT city, count(*) AS n FROM temperatures WHERE temperature > 20 GROUP BY city
hot_df = hot.DataFrame()
assert set(hot_df["city"]) <= set(climate) and hot_df["n"].sum() > 0
hot_df
"""),
    md("## Plot"),
    code("""
%matplotlib inline
fig, ax = plt.subplots(figsize=(7, 3.5))
ax.bar(summary["city"], summary["mean_temp"], color="tab:orange")
ax.errorbar(
    summary["city"],
    summary["mean_temp"],
    yerr=[summary["mean_temp"] - summary["min_temp"], summary["max_temp"] - summary["mean_temp"]],
    fmt="none",
    ecolor="gray",
    capsize=3,
)
ax.set_ylabel("temperature (°C)")
ax.set_title("Mean temperature per city (min-max whiskers)")
plt.show()
"""),
    md("## Clean up"),
    code("""
conn.close()
engine.dispose()
cluster.stop()
shutil.rmtree(workdir, ignore_errors=True)
print("stopped")
"""),
]

failover = [
    md("""
# Failover: kill -9 the leader while writing

A background thread inserts rows continuously, one acknowledged `INSERT` at a time, each
with a unique id, and records when it was acknowledged and how long it took. Midway, the
notebook kills the leader with SIGKILL. Writes stall until a new leader is elected, then
continue. At the end we check that every acknowledged id is in the table **exactly once**
(the table has no unique constraint, so a write applied twice would show up).
"""),
    code("""
import shutil
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import matplotlib.pyplot as plt

import raftsql
from raftsql.cluster import LocalCluster
"""),
    code("""
workdir = Path(tempfile.mkdtemp(prefix="raftsql-failover-"))
cluster = LocalCluster(directory=workdir / "cluster", n=3).start()
leader = cluster.wait_for_leader()
print("nodes:", cluster.addresses(), "leader: node", leader)

setup = raftsql.connect(cluster.addresses(), autocommit=True)
# No UNIQUE constraint on purpose: a write applied twice would show up as two rows.
setup.execute("CREATE TABLE t (id INTEGER NOT NULL, written_at REAL)");
"""),
    md("## The writer"),
    code("""
acked = []  # (id, t, latency) of every acknowledged INSERT
failed = []  # (id, t, error) of INSERTs that raised (their outcome is unknown)
stop = threading.Event()
t0 = time.monotonic()


def writer():
    conn = raftsql.connect(cluster.addresses(), autocommit=True, timeout=10)
    next_id = 0
    while not stop.is_set():
        next_id += 1
        start = time.monotonic()
        try:
            conn.execute("INSERT INTO t VALUES (?, ?)", (next_id, time.time()))
        except Exception as exc:  # keep going; this id may or may not have been applied
            failed.append((next_id, time.monotonic() - t0, repr(exc)))
            continue
        end = time.monotonic()
        acked.append((next_id, end - t0, end - start))
    conn.close()


thread = threading.Thread(target=writer, daemon=True)
thread.start()
"""),
    md("## Kill the leader mid-run, wait for a new one, keep writing"),
    code("""
time.sleep(2.0)
old_leader = cluster.wait_for_leader()
kill_t = time.monotonic() - t0
cluster.kill(old_leader)  # SIGKILL
new_leader = cluster.wait_for_leader()
elected_t = time.monotonic() - t0
print(f"killed node {old_leader} at t={kill_t:.2f}s; node {new_leader} leads at t={elected_t:.2f}s")
assert new_leader != old_leader

time.sleep(2.0)
stop.set()
thread.join(timeout=30)
assert not thread.is_alive()
print(f"{len(acked)} acknowledged writes, {len(failed)} failed")
"""),
    md("## Latency over time"),
    code("""
%matplotlib inline
ts = [a[1] for a in acked]
lat_ms = [a[2] * 1000 for a in acked]
before = [a for a in acked if a[1] < kill_t]
after = [a for a in acked if a[1] > kill_t]
gap = min(a[1] for a in after) - max(a[1] for a in before)
print(f"longest stretch without an acknowledgement around the kill: {gap:.2f}s")

fig, ax = plt.subplots(figsize=(8, 3.5))
ax.scatter(ts, lat_ms, s=6)
ax.axvline(kill_t, color="red", linestyle="--", label=f"kill -9 node {old_leader}")
ax.axvline(elected_t, color="green", linestyle=":", label=f"node {new_leader} leads")
ax.set_yscale("log")
ax.set_xlabel("time since start (s)")
ax.set_ylabel("write latency (ms)")
ax.set_title("INSERT latency through a leader failover")
ax.legend()
plt.show()
"""),
    md("## Every acknowledged write is there, exactly once"),
    code("""
check = raftsql.connect(cluster.addresses())
stored = Counter(row[0] for row in check.execute("SELECT id FROM t").fetchall())
acked_ids = [a[0] for a in acked]
missing = [i for i in acked_ids if stored[i] == 0]
duplicated = [i for i, n in stored.items() if n > 1]
print(f"{len(acked_ids)} acknowledged, {sum(stored.values())} rows stored")
assert len(acked) > 0 and len(after) > 0, "no writes acknowledged after the failover"
assert not missing, f"acknowledged but missing: {missing[:10]}"
assert not duplicated, f"applied more than once: {duplicated[:10]}"
assert all(stored[i] == 1 for i in acked_ids)
print("ok: every acknowledged id is present exactly once")
"""),
    md("## Restart the killed node and clean up"),
    code("""
leader_status = cluster.statuses()[new_leader]
cluster.start_node(old_leader)
# Wait until the restarted node has caught up with everything committed so far.
deadline = time.monotonic() + 20
st = None
while time.monotonic() < deadline:
    st = cluster.statuses().get(old_leader)
    if (
        st is not None
        and st["term"] >= leader_status["term"]
        and st["applied"] >= leader_status["commit"]
    ):
        break
    time.sleep(0.1)
else:
    raise AssertionError(f"node {old_leader} did not catch up: {st}")
print(f"node {old_leader} is back as {st['role']} (term {st['term']}, applied {st['applied']})")
check.close()
setup.close()
cluster.stop()
shutil.rmtree(workdir, ignore_errors=True)
"""),
]

save("quickstart", quickstart)
save("failover", failover)
