"""A torchrun launch of `openai-dit serve`: every rank joins the group and the control channel and loads its
share of the model; rank 0 then serves HTTP and drives the others, which only run `serve_worker`."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import torch.distributed as dist

from ..config import ServerConfig
from .control import ControlClient, ControlServer, open_control_channel
from .coordinator import RankCoordinator, Watchdog, serve_worker
from .ranks import StepSync, init_ranks

__all__ = ["RankLaunch"]

logger = logging.getLogger("openai_dit.ranks")


class RankLaunch:
    def __init__(self, config: ServerConfig) -> None:
        from ..models.devices import rank_device

        self.config = config
        local_rank, world_size = int(os.environ.get("LOCAL_RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
        self.device = rank_device(config.device, local_rank=local_rank, world_size=world_size)
        self.info = init_ranks(self.device, local_rank, config.step_timeout)
        self.control = open_control_channel(self.info.rank, self.info.world_size, self.info.sync_group)
        self.sync = StepSync(self.info.sync_group)
        logger.info("rank %d of %d joined (%s parallelism, pid %d)", self.info.rank, self.info.world_size,
                    config.parallel_type, os.getpid())

    @property
    def rank(self) -> int:
        return self.info.rank

    @property
    def parallel(self) -> dict:
        return {"type": self.config.parallel_type, "world_size": self.info.world_size,
                "text_encoder": self.config.parallel_text_encoder, "vae": self.config.parallel_vae}

    def load_executor(self):
        from ..models.executor import PipelineExecutor
        from ..models.loader import load_model

        model = load_model(self.config, world_size=self.info.world_size, local_rank=self.info.local_rank)
        return PipelineExecutor(model, step_sync=self.sync)

    def run_worker(self) -> int:
        """A rank other than 0: load, then run what rank 0 sends. The exit code of the rank."""
        from ..models.loader import StartupError

        try:
            executor = self.load_executor()
        except StartupError as exc:
            logger.error("exiting: %s", exc)
            return 1
        assert isinstance(self.control, ControlClient)
        code = serve_worker(executor, self.control)
        self.control.close()
        if code == 0:
            dist.destroy_process_group()
        return code

    def coordinator(self, executor, on_dead: Callable[[str], None]) -> RankCoordinator:
        assert isinstance(self.control, ControlServer)
        return RankCoordinator(executor, self.control, self.info.world_size, self.parallel, on_dead)

    def watch(self, on_dead: Callable[[str], None]) -> None:
        """Rank 0: a lost rank (its control socket closed) or a hung step ends the launch."""
        assert isinstance(self.control, ControlServer)
        self.control.on_peer_lost = lambda rank: on_dead(f"rank {rank} disconnected")
        Watchdog(self.sync, self.config.step_timeout, on_dead)

    def finish(self, clean: bool) -> None:
        if clean:
            dist.destroy_process_group()
