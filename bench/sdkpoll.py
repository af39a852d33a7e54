"""The official SDK's helper as a contender: one `videos.poll` task per job, then download.

`poll` asks every second (or what `openai-poll-after-ms` says) and never gives up; the download
goes through `download_content`, which reads the whole body into memory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
import warnings
from pathlib import Path

import openai


async def one(client: openai.AsyncOpenAI, video_id: str, out: Path) -> tuple[str, float | None]:
    video = await client.videos.poll(video_id)
    if video.status != "completed":
        return video_id, None
    content = await client.videos.download_content(video_id)
    (out / f"{video_id}.mp4").write_bytes(content.content)
    return video_id, time.time()


async def run(base_url: str, ids: list[str], out: Path) -> dict[str, float | None]:
    client = openai.AsyncOpenAI(api_key="sk-bench", base_url=base_url, max_retries=2)
    async with client:
        results = await asyncio.gather(*(one(client, video_id, out) for video_id in ids))
    return dict(results)


def main() -> None:
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--ids", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    stored = asyncio.run(run(args.base_url, json.loads(args.ids.read_text()), args.out))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "cpu_s": usage.ru_utime + usage.ru_stime,
                "peak_rss_mib": usage.ru_maxrss / 1024,
                "stored_at": stored,
            }
        )
    )


if __name__ == "__main__":
    main()
