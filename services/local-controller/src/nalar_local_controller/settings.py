"""Local controller settings (`NALAR_LC_...`)."""

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class LocalControllerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NALAR_LC_", extra="ignore")

    telemetry_interval_s: float = 0.2
    no_instance_timeout_s: float = 30.0
    max_held: int = 50_000
    housekeeping_interval_s: float = 1.0
    max_call_bytes: int = 1_048_576
    recheck_interval_s: float = 5.0
    spill_queue: float = Field(default=2.0, description="A session stays on the instance "
                               "holding its KV cache until that instance has more than this "
                               "many queued calls per slot; then it spills over")
    lease_transfer_ttl_ms: int = Field(default=10_000, description="How long a migrated "
                                       "session's state lease stays reserved for its new "
                                       "instance")
    max_deliver: int = Field(default=5, description="Deliveries of a call (controller "
                             "restarts, lost instances) before it is dead-lettered")
    redelivery_backoff_s: float = Field(default=1.0, description="Wait before a call whose "
                                        "instance was lost runs again; doubles per loss")
    redelivery_backoff_max_s: float = 30.0
    reconcile_after_s: float = Field(default=10.0, description="A dispatched call not "
                                     "reported done for this long is checked: resolved "
                                     "already (its done was lost), or still running on its "
                                     "host, or dispatched again")
    control_timeout_s: float = 2.0
    placement: Literal["dynamic", "sticky", "creation"] = Field(
        default="dynamic", description="How calls are placed on instances: `dynamic` (the "
        "policy's routes, KV-cache affinity with spill-over, join-shortest-queue, idle "
        "instances take queued calls); `sticky` (a session's calls always go to one instance "
        "chosen by hash, first come first served, nothing moves: a static runtime); "
        "`creation` (the shortest queue when the call is created, never revisited). The last "
        "two are the benchmark's baselines")
    spawn_hosts: int = Field(default=0, description="Agent host processes this controller "
                             "may start itself when a snapshot provisions an instance and no "
                             "host of the node has a free slot (stopped again on release)")
