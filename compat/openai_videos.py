"""Drive a running openai-dit server with the official `openai` SDK through every Videos call.

    python compat/openai_videos.py --url http://127.0.0.1:8000 [--steps 2]

Only `base_url` changes from a stock OpenAI client. Whether the model makes video from text, from an image or
both is read from `GET /v1/models`. Covers create, create_and_poll, retrieve, list with paging, delete (of a
running job), download_content with each variant, remix and input_reference (an uploaded file and an image_url),
and prints the progress one job went through. Exits non-zero on the first mismatch.
"""

from __future__ import annotations

import argparse
import base64
import io
import sys
import time
import warnings

import av
import openai
from PIL import Image
from sdk_checks import expect_error, png


def capabilities(client: openai.OpenAI) -> dict:
    model = client.models.list().data[0]
    return {"id": model.id, **(model.model_extra or {}).get("capabilities", {})}


class Videos:
    def __init__(self, client: openai.OpenAI, model: dict, steps: int) -> None:
        self.client = client
        self.model = model
        self.steps = steps
        self.image_to_video = "image-to-video" in model["tasks"]
        self.text_to_video = "text-to-video" in model["tasks"]
        self.reference = png(96, 64, (30, 120, 220))

    def create_args(self, **extra) -> dict:
        """Arguments for a job this model can do: a reference image when it needs one."""
        args = {"extra_body": {"num_inference_steps": self.steps, **extra.pop("extra_body", {})}, **extra}
        if not self.text_to_video:
            args.setdefault("input_reference", ("ref.png", self.reference, "image/png"))
        return args

    def round_trip(self) -> openai.types.Video:
        """create_and_poll -> download_content, each variant."""
        video = self.client.videos.create_and_poll(model=self.model["id"], prompt="waves on a beach", seconds="1",
                                                   size="64x64", **self.create_args())
        assert video.status == "completed" and video.progress == 100, video
        assert video.size == "64x64" and video.seconds == "1" and video.completed_at and video.expires_at, video
        mp4 = self.client.videos.download_content(video.id).content
        with av.open(io.BytesIO(mp4)) as container:
            frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
        assert len(frames) == video.model_extra["num_frames"] and frames[0].shape == (64, 64, 3), len(frames)
        assert self.client.videos.download_content(video.id, variant="video").content == mp4
        thumbnail = Image.open(io.BytesIO(self.client.videos.download_content(video.id, variant="thumbnail").content))
        sheet = Image.open(io.BytesIO(self.client.videos.download_content(video.id, variant="spritesheet").content))
        assert thumbnail.format == "WEBP" and thumbnail.size == (64, 64), thumbnail
        assert sheet.format == "JPEG" and sheet.width >= 64, sheet
        print(f"create_and_poll + download_content: {len(frames)} frames, thumbnail {thumbnail.size}, "
              f"spritesheet {sheet.size}")
        return video

    def progress(self) -> None:
        """A longer job, polled fast: progress must pass through intermediate values, in order."""
        video = self.client.videos.create(prompt="a slow pan over mountains", seconds="4", size="128x128",
                                          **self.create_args(extra_body={"num_inference_steps": 40}))
        assert video.status == "queued" and video.progress == 0, video
        seen = [0]
        while video.status in ("queued", "in_progress"):
            time.sleep(0.02)
            video = self.client.videos.retrieve(video.id)
            if video.progress != seen[-1]:
                seen.append(video.progress)
        assert video.status == "completed" and seen == sorted(seen) and seen[-1] == 100, (video, seen)
        assert len([p for p in seen if 0 < p < 100]) >= 3, seen
        print(f"progress of one job: {seen}")

    def references(self) -> None:
        """input_reference as an uploaded file, as an image_url, and refused where the model cannot use it."""
        data_url = "data:image/png;base64," + base64.b64encode(self.reference).decode()
        if not self.image_to_video:
            expect_error(openai.BadRequestError, "input_reference", lambda: self.client.videos.create(
                prompt="x", input_reference=("ref.png", self.reference, "image/png")))
            print("input_reference: refused by a text-to-video model")
            return
        uploaded = self.client.videos.create_and_poll(
            prompt="a boat", input_reference=("ref.png", self.reference, "image/png"),
            extra_body={"num_inference_steps": self.steps})
        assert uploaded.status == "completed", uploaded
        # The SDK cannot send an object input_reference itself; extra_body sends it as input_reference[image_url].
        by_url = self.client.videos.create_and_poll(
            prompt="a boat", size="64x64", extra_body={"num_inference_steps": self.steps,
                                                       "input_reference": {"image_url": data_url}})
        assert by_url.status == "completed", by_url
        if not self.text_to_video:
            expect_error(openai.BadRequestError, "input_reference", lambda: self.client.videos.create(prompt="x"))
        print(f"input_reference: upload -> {uploaded.size}, image_url -> {by_url.size}")

    def remix(self, source: openai.types.Video) -> None:
        remix = self.client.videos.remix(source.id, prompt="the same beach at night")
        assert remix.remixed_from_video_id == source.id and remix.prompt == "the same beach at night", remix
        assert remix.size == source.size and remix.seconds == source.seconds, remix
        assert remix.model_extra["seed"] == source.model_extra["seed"], remix
        done = self.client.videos.poll(remix.id)
        assert done.status == "completed", done
        print(f"remix: {remix.id} from {source.id}")

    def listing(self) -> None:
        ids = [self.client.videos.create(prompt=f"clip {i}", **self.create_args()).id for i in range(3)]
        first = self.client.videos.list(limit=2)
        assert [v.id for v in first.data] == ids[:0:-1] and first.has_more, first
        walked = [v.id for v in self.client.videos.list(limit=2)]  # auto-paging follows `after`
        assert walked[:3] == ids[::-1] and len(walked) == len(set(walked)), walked
        ascending = self.client.videos.list(order="asc", limit=100).data
        assert [v.id for v in ascending][-3:] == ids, ascending
        for video_id in ids:
            self.client.videos.poll(video_id)
        print(f"list: {len(walked)} jobs over pages of 2")

    def delete_running(self) -> None:
        video = self.client.videos.create(prompt="never finished", seconds="4", size="256x256",
                                          **self.create_args(extra_body={"num_inference_steps": 200}))
        while self.client.videos.retrieve(video.id).progress == 0:
            time.sleep(0.02)
        deleted = self.client.videos.delete(video.id)
        assert deleted.id == video.id and deleted.deleted and deleted.object == "video.deleted", deleted
        expect_error(openai.NotFoundError, None, lambda: self.client.videos.retrieve(video.id))
        expect_error(openai.NotFoundError, None, lambda: self.client.videos.download_content(video.id))
        assert video.id not in [v.id for v in self.client.videos.list(limit=100).data]
        print("delete: a running job is gone")

    def refusals(self) -> None:
        args = self.create_args()
        expect_error(openai.BadRequestError, "size", lambda: self.client.videos.create(
            prompt="x", size="100x100", **args))
        expect_error(openai.BadRequestError, "seconds", lambda: self.client.videos.create(
            prompt="x", seconds="soon", **args))
        expect_error(openai.NotFoundError, "model", lambda: self.client.videos.create(
            prompt="x", model="dall-e-3", **args))  # an image model's name on the video route
        expect_error(openai.NotFoundError, None, lambda: self.client.videos.retrieve("video_" + "0" * 32))
        print("refusals: size, seconds, model, unknown id")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args()
    warnings.simplefilter("ignore", DeprecationWarning)  # the SDK marks the Videos API deprecated
    client = openai.OpenAI(base_url=args.url.rstrip("/") + "/v1", api_key="unused", max_retries=0)
    videos = Videos(client, capabilities(client), args.steps)
    source = videos.round_trip()
    videos.progress()
    videos.references()
    videos.remix(source)
    videos.listing()
    videos.delete_running()
    videos.refusals()
    print("openai videos: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
