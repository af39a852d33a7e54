"""The simulator in its own process, so its CPU is counted apart from the contender's."""

from __future__ import annotations

import argparse

from reelwatch import simulator


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--video-bytes", type=int, default=64 * 1024)
    parser.add_argument("--webhook-url")
    parser.add_argument("--webhook-secret")
    parser.add_argument("--replicate-webhook-secret", help="whsec_...: Replicate's account secret")
    args = parser.parse_args()
    config = simulator.SimConfig(
        api_key="sk-bench",
        latency_s=args.latency,
        video_bytes=args.video_bytes,
        webhook_url=args.webhook_url,
        webhook_secret=args.webhook_secret,
        replicate_webhook_secret=args.replicate_webhook_secret,
    )
    simulator.serve(config, port=args.port)


if __name__ == "__main__":
    main()
