"""PostgreSQL's own time to load the bench's `customers` rows by COPY, text against binary
format, without dbt-activate: what choosing the binary format can save on the server.

  pg_copy_formats.py PG_URL [ROWS] [ROUNDS]

Builds both encodings of ROWS rows (default 1,000,000) of the bench shape (bigint, two texts,
numeric(12, 2), double precision, text, timestamptz) up front, then, ROUNDS times (default
3) in turn, recreates `bench.copy_formats` and loads them in transactions of 10,000 rows,
timing only the COPYs and commits. Prints each time and checks both formats stored the same
sums. Run it against the bench's server (scripts/postgres.sh; psycopg2 from .tools/drt-venv).
"""

import datetime
import io
import struct
import sys
import time

import psycopg2

BATCH = 10_000
TIERS = ["free", "starter", "pro", "enterprise"]
PG_EPOCH = datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)


def rows(lo, hi):
    for i in range(lo, hi):
        cents = (i * 7919) % 1_000_000
        updated = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc) + datetime.timedelta(seconds=i)
        yield (i, f"user{i}@example.com", f"Customer {i}", f"{cents // 100}.{cents % 100:02d}",
               ((i * 104729) % 10000) / 10000.0, TIERS[i % 4], updated)


def text_batch(lo, hi):
    lines = []
    for r in rows(lo, hi):
        stamp = r[6].strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        lines.append(f"{r[0]}\t{r[1]}\t{r[2]}\t{r[3]}\t{r[4]!r}\t{r[5]}\t{stamp}\n")
    return "".join(lines).encode()


def numeric_binary(text):
    whole, fraction = text.split(".")
    digits = []
    n = int(whole)
    while n > 0:
        digits.insert(0, n % 10_000)
        n //= 10_000
    weight = len(digits) - 1
    digits.append(int(fraction.ljust(4, "0")))
    return struct.pack(">hhhh", len(digits), weight, 0, len(fraction)) + b"".join(
        struct.pack(">h", d) for d in digits)


def field(data):
    return struct.pack(">i", len(data)) + data


def binary_batch(lo, hi):
    out = [b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)]
    for r in rows(lo, hi):
        micros = (r[6] - PG_EPOCH) // datetime.timedelta(microseconds=1)
        out.append(struct.pack(">h", 7) + field(struct.pack(">q", r[0])) + field(r[1].encode())
                   + field(r[2].encode()) + field(numeric_binary(r[3]))
                   + field(struct.pack(">d", r[4])) + field(r[5].encode())
                   + field(struct.pack(">q", micros)))
    out.append(struct.pack(">h", -1))
    return b"".join(out)


def main():
    url = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    starts = range(1, count + 1, BATCH)
    data = {
        "text": [text_batch(lo, min(lo + BATCH, count + 1)) for lo in starts],
        "binary": [binary_batch(lo, min(lo + BATCH, count + 1)) for lo in starts],
    }
    con = psycopg2.connect(url)
    cur = con.cursor()
    sums = {}
    for _ in range(rounds):
        for name, batches in data.items():
            cur.execute("create schema if not exists bench")
            cur.execute("drop table if exists bench.copy_formats")
            cur.execute("create table bench.copy_formats (id bigint primary key, email text, "
                        "name text, lifetime_value numeric(12, 2), churn_score double precision, "
                        "product_tier text, updated_at timestamptz)")
            con.commit()
            option = " (FORMAT binary)" if name == "binary" else ""
            started = time.perf_counter()
            for batch in batches:
                cur.copy_expert(f"COPY bench.copy_formats FROM STDIN{option}", io.BytesIO(batch))
                con.commit()
            seconds = time.perf_counter() - started
            cur.execute("select count(*), sum(lifetime_value), sum(churn_score::numeric), max(updated_at) "
                        "from bench.copy_formats")
            sums[name] = cur.fetchone()
            size = sum(len(b) for b in batches) / 1e6
            print(f"{name:6s} {seconds:6.2f} s  {size:5.0f} MB  {sums[name]}", flush=True)
    if sums["text"] != sums["binary"]:
        sys.exit(f"the formats stored different rows: {sums}")


if __name__ == "__main__":
    main()
