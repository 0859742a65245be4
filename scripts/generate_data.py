#!/usr/bin/env python
"""Deterministic sample data for the example jobs and the benchmark: taxi trips (CSV) and a zone lookup.

    python scripts/generate_data.py --rows 10000 --files 6 --days 3 --out data/raw [--bad-rows 5]

Writes `<out>/trips/pickup_date=YYYY-MM-DD/trips-NNNNN.csv` (one folder per pickup day, Hive style, as a crawler
expects; `--layout flat` writes all files into `<out>/trips/`) and `<out>/zones/zones.csv`. The same arguments
always give the same bytes (`--seed`). The data has what the example jobs deal with: zero-distance trips, trips
ending before they start, missing tips, a few duplicate trip ids, negative fares, zones without a region match,
and with `--bad-rows` malformed lines (a value that is not a number, a wrong number of fields).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

ZONES = [
    (1, "Old Town", "eu"), (2, "Harbour", "eu"), (3, "Riverside", "eu"), (4, "University", "eu"),
    (5, "Airport", "eu"), (6, "Midtown", "us"), (7, "Uptown", "us"), (8, "Downtown", "us"),
    (9, "Lakeside", "us"), (10, "Station", "us"), (11, "Market", "asia"), (12, "Temple", "asia"),
    (13, "Bay", "asia"), (14, "Hills", "asia"), (15, "Park", "asia"), (16, "Stadium", None),
]
TRIP_COLUMNS = ["trip_id", "pickup_ts", "dropoff_ts", "pickup_zone_id", "trip_distance", "fare_amount",
                "tip_amount", "passenger_count"]
START_DAY = "2024-01-01"


def trips_table(n: int, first_id: int, day_index: int, rng: object) -> object:
    """`n` trips on day `day_index`, as a pyarrow Table (vectorised: 4 M rows take seconds)."""
    import numpy as np
    import pyarrow as pa

    assert isinstance(rng, np.random.Generator)
    ids = np.arange(first_id, first_id + n, dtype=np.int64)
    dup = rng.random(n) < 0.001  # a few duplicate trip ids (the dedupe step keeps the latest)
    ids = np.where(dup & (ids > first_id), ids - 1, ids)
    base = np.datetime64(START_DAY, "s") + np.timedelta64(day_index, "D")
    pickup = base + rng.integers(0, 86_400, n).astype("timedelta64[s]")
    minutes = rng.gamma(2.0, 8.0, n)
    dropoff = pickup + (minutes * 60).astype("int64").astype("timedelta64[s]")
    backwards = rng.random(n) < 0.002
    dropoff = np.where(backwards, pickup - np.timedelta64(300, "s"), dropoff)
    distance = np.round(rng.gamma(1.5, 2.2, n), 2)
    distance = np.where(rng.random(n) < 0.01, 0.0, distance)
    fare = np.round(3.0 + distance * 2.5 + minutes * 0.35, 2)
    fare = np.where(rng.random(n) < 0.001, -fare, fare)
    tip = np.round(fare * rng.choice([0.0, 0.1, 0.15, 0.2], n), 2)
    tip_mask = rng.random(n) < 0.05  # missing tip: an empty CSV field
    zone = rng.integers(1, len(ZONES) + 3, n).astype(np.int32)  # ids past the lookup have no zone
    passengers = rng.choice(np.array([1, 1, 1, 2, 2, 3, 4, 5], dtype=np.int32), n)
    return pa.table({
        "trip_id": pa.array(ids),
        "pickup_ts": pa.array(pickup.astype("datetime64[s]")),
        "dropoff_ts": pa.array(dropoff.astype("datetime64[s]")),
        "pickup_zone_id": pa.array(zone),
        "trip_distance": pa.array(distance),
        "fare_amount": pa.array(fare),
        "tip_amount": pa.array(tip, mask=tip_mask),
        "passenger_count": pa.array(passengers),
    })


def bad_lines(k: int, first_id: int) -> list[str]:
    """Malformed CSV lines, deterministic: alternately a non-numeric value and a short row."""
    out = []
    for i in range(k):
        tid = first_id + i
        if i % 2 == 0:
            out.append(f"{tid},2024-01-01 10:00:00,2024-01-01 10:12:00,3,not-a-number,12.5,1.0,1")
        else:
            out.append(f"{tid},2024-01-01 11:00:00,garbage")
    return out


def shop_orders(path: Path, rng: object, n: int = 300) -> None:
    """The shop's database for the example jdbc job (jobs/shop_orders.yaml): a SQLite file with an `orders` table
    (no database server needed; the JDBC path is the same as PostgreSQL's or MySQL's)."""
    import sqlite3

    if path.exists():
        path.unlink()
    db = sqlite3.connect(path)
    with db:
        db.execute("CREATE TABLE orders (order_id INTEGER PRIMARY KEY, zone_id INTEGER NOT NULL, amount REAL NOT "
                   "NULL, status TEXT NOT NULL, updated_at TEXT NOT NULL)")
        zones = [z[0] for z in ZONES]
        db.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?)", [
            (i, int(zones[int(rng.integers(len(zones)))]), round(float(rng.uniform(5, 120)), 2),  # type: ignore[attr-defined]
             ("paid", "shipped", "returned")[i % 3], f"{START_DAY} {i // 60 % 24:02d}:{i % 60:02d}:00")
            for i in range(1, n + 1)])
    db.close()


def generate(rows: int, files: int, days: int, out: Path, bad_rows: int = 0, seed: int = 42,
             layout: str = "daily", quiet: bool = False) -> dict[str, object]:
    import numpy as np
    import pyarrow.csv as pacsv

    if rows < 0 or files < 1 or days < 1:
        raise SystemExit("error: --rows >= 0, --files >= 1 and --days >= 1")
    t0 = time.monotonic()
    trips_dir = out / "trips"
    if trips_dir.exists():
        shutil.rmtree(trips_dir)
    trips_dir.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    per_file = [rows // files + (1 if i < rows % files else 0) for i in range(files)]
    bad_per_file = [bad_rows // files + (1 if i < bad_rows % files else 0) for i in range(files)]
    next_id = 1
    written = []
    for i in range(files):
        day = i % days
        date = str(np.datetime64(START_DAY, "D") + np.timedelta64(day, "D"))
        folder = trips_dir / f"pickup_date={date}" if layout == "daily" else trips_dir
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"trips-{i:05d}.csv"
        table = trips_table(per_file[i], next_id, day, rng)
        next_id += per_file[i]
        with open(path, "wb") as f:
            f.write((",".join(TRIP_COLUMNS) + "\n").encode())
            pacsv.write_csv(table, f, pacsv.WriteOptions(include_header=False, quoting_style="none"))
        if bad_per_file[i]:
            with open(path, "a", encoding="utf-8") as f:
                f.writelines(line + "\n" for line in bad_lines(bad_per_file[i], 10_000_000_000 + next_id))
            next_id += bad_per_file[i]
        written.append(path)
    zones_dir = out / "zones"
    zones_dir.mkdir(parents=True, exist_ok=True)
    with open(zones_dir / "zones.csv", "w", encoding="utf-8") as f:
        f.write("zone_id,zone_name,region\n")
        f.writelines(f"{zid},{name},{region or ''}\n" for zid, name, region in ZONES)
    shop_orders(out / "shop.db", rng)
    size = sum(os.path.getsize(p) for p in written)
    if not quiet:
        print(f"wrote {rows:,} trips ({bad_rows} malformed) in {files} file(s) over {min(days, files)} day(s), "
              f"{size / 1e6:.1f} MB, and {len(ZONES)} zones to {out} in {time.monotonic() - t0:.1f}s",
              file=sys.stderr)
    return {"rows": rows, "files": [str(p) for p in written], "bytes": size, "bad_rows": bad_rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=10_000, help="trip rows in all (default 10000)")
    ap.add_argument("--files", type=int, default=6, help="CSV files (default 6)")
    ap.add_argument("--days", type=int, default=3, help="pickup days, one folder each (default 3)")
    ap.add_argument("--out", type=Path, default=Path("data/raw"), help="output folder (default data/raw)")
    ap.add_argument("--bad-rows", type=int, default=0, help="malformed lines added (default 0)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--layout", choices=("daily", "flat"), default="daily")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)
    generate(a.rows, a.files, a.days, a.out, a.bad_rows, a.seed, a.layout, a.quiet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
