"""The seed's design, written from its description, as a contender.

Every 30 s: fetch the active jobs oldest first, check them one by one, fail those older than
15 minutes, download a completed video into memory and store it base64-encoded in the job's
database row. Runs until every job is finished, then prints its own CPU and peak memory.
"""

from __future__ import annotations

import argparse
import base64
import json
import resource
import sqlite3
import time
from pathlib import Path

import httpx

TIMEOUT_S = 15 * 60


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--ids", type=Path, required=True)
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--interval", type=float, default=30.0)
    args = parser.parse_args()
    db = sqlite3.connect(args.db)
    db.execute(
        "CREATE TABLE IF NOT EXISTS jobs (video_id TEXT PRIMARY KEY, status TEXT,"
        " created_at REAL, stored_at REAL, video_b64 TEXT)"
    )
    now = time.time()
    ids = json.loads(args.ids.read_text())
    db.executemany(
        "INSERT OR IGNORE INTO jobs (video_id, status, created_at) VALUES (?, 'active', ?)",
        [(video_id, now) for video_id in ids],
    )
    db.commit()
    requests = 0
    headers = {"Authorization": "Bearer sk-bench"}
    with httpx.Client(base_url=args.base_url, headers=headers, timeout=30) as client:
        while True:
            started = time.time()
            active = db.execute(
                "SELECT video_id, created_at FROM jobs WHERE status = 'active' ORDER BY created_at"
            ).fetchall()
            if not active:
                break
            for video_id, created_at in active:
                if time.time() - created_at > TIMEOUT_S:
                    db.execute("UPDATE jobs SET status = 'failed' WHERE video_id = ?", (video_id,))
                    continue
                requests += 1
                video = client.get(f"/videos/{video_id}").json()
                if video.get("status") == "completed":
                    body = client.get(f"/videos/{video_id}/content").content  # all in memory
                    encoded = base64.b64encode(body).decode()
                    db.execute(
                        "UPDATE jobs SET status = 'completed', stored_at = ?, video_b64 = ?"
                        " WHERE video_id = ?",
                        (time.time(), encoded, video_id),
                    )
                elif video.get("status") == "failed":
                    db.execute("UPDATE jobs SET status = 'failed' WHERE video_id = ?", (video_id,))
                db.commit()
            time.sleep(max(0.0, args.interval - (time.time() - started)))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "cpu_s": usage.ru_utime + usage.ru_stime,
                "peak_rss_mib": usage.ru_maxrss / 1024,
                "status_requests": requests,
            }
        )
    )


if __name__ == "__main__":
    main()
