"""The official SDK's helper as a contender: one `videos.poll` task per job, then download.

`poll` asks every second (or what `openai-poll-after-ms` says) and never gives up; the download
goes through `download_content`, which reads the whole body into memory. With `--specs` (the
`profiles` scenario) it creates each job itself at its arrival time, with `create_and_poll`,
and also prints the ids it created, in workload order.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
import warnings
from pathlib import Path
from typing import Any

import openai


async def one(client: openai.AsyncOpenAI, video_id: str, out: Path) -> tuple[str, float | None]:
    video = await client.videos.poll(video_id)
    if video.status != "completed":
        return video_id, None
    content = await client.videos.download_content(video_id)
    (out / f"{video_id}.mp4").write_bytes(content.content)
    return video_id, time.time()


async def created(
    client: openai.AsyncOpenAI, spec: dict[str, Any], t0: float, out: Path
) -> tuple[str, float | None]:
    await asyncio.sleep(max(0.0, t0 + spec["at"] - time.time()))
    video = await client.videos.create_and_poll(
        prompt=spec["prompt"], model=spec["model"], seconds=str(spec["seconds"])
    )
    if video.status != "completed":
        return video.id, None
    content = await client.videos.download_content(video.id)
    (out / f"{video.id}.mp4").write_bytes(content.content)
    return video.id, time.time()


async def create_all(
    base_url: str, specs: list[dict[str, Any]], out: Path
) -> list[tuple[str, float | None]]:
    client = openai.AsyncOpenAI(api_key="sk-bench", base_url=base_url, max_retries=2)
    t0 = time.time()
    async with client:
        return list(await asyncio.gather(*(created(client, spec, t0, out) for spec in specs)))


async def run(base_url: str, ids: list[str], out: Path) -> dict[str, float | None]:
    client = openai.AsyncOpenAI(api_key="sk-bench", base_url=base_url, max_retries=2)
    async with client:
        results = await asyncio.gather(*(one(client, video_id, out) for video_id in ids))
    return dict(results)


def main() -> None:
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--ids", type=Path, help="jobs created already: watch them")
    group.add_argument("--specs", type=Path, help="jobs to create at their arrival times")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    ids: list[str] | None = None
    if args.specs is not None:
        pairs = asyncio.run(create_all(args.base_url, json.loads(args.specs.read_text()), args.out))
        ids, stored = [video_id for video_id, _ in pairs], dict(pairs)
    else:
        stored = asyncio.run(run(args.base_url, json.loads(args.ids.read_text()), args.out))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "cpu_s": usage.ru_utime + usage.ru_stime,
                "peak_rss_mib": usage.ru_maxrss / 1024,
                "stored_at": stored,
                **({"ids": ids} if ids is not None else {}),
            }
        )
    )


if __name__ == "__main__":
    main()
