# Generated from _async/_lineage.py by scripts/unasync.py: edit that file, then run the script.
"""Address types, addresses, lineage (edges, graphs, up/downstream) and OpenLineage."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from watcher_client import _http
from watcher_client._errors import ValidationError
from watcher_client._models import (
    JSON,
    Address,
    AddressType,
    LineageBatchResult,
    LineageCreated,
    LineageEventResult,
    LineageGraph,
    NodeGraph,
    StoredAddress,
)
from watcher_client._sync._core import Core, key


class LineageRoutes(Core):
    # -- addresses and lineage -------------------------------------------------------------

    def create_address_type(self, name: str, group_name: str) -> AddressType:
        return cast(
            AddressType,
            self.request("POST", "/address_type", body={"name": name, "group_name": group_name}),
        )

    def list_address_types(
        self, limit: int | None = None, offset: int | None = None
    ) -> list[AddressType]:
        return cast(
            list[AddressType],
            self.request("GET", "/address_type", params={"limit": limit, "offset": offset}),
        )

    def get_address_type(self, address_type_id: int) -> AddressType:
        return cast(AddressType, self.request("GET", f"/address_type/{address_type_id}"))

    def update_address_type(self, id_or_name: int | str, **fields: Any) -> AddressType:
        return cast(
            AddressType,
            self.request("PATCH", "/address_type", body={**key(id_or_name), **fields}),
        )

    def create_address(self, address: Address) -> StoredAddress:
        return cast(StoredAddress, self.request("POST", "/address", body=address))

    def list_addresses(
        self, limit: int | None = None, offset: int | None = None
    ) -> list[StoredAddress]:
        return cast(
            list[StoredAddress],
            self.request("GET", "/address", params={"limit": limit, "offset": offset}),
        )

    def get_address(self, address_id: int) -> StoredAddress:
        return cast(StoredAddress, self.request("GET", f"/address/{address_id}"))

    def update_address(self, id_or_name: int | str, **fields: Any) -> StoredAddress:
        return cast(
            StoredAddress,
            self.request("PATCH", "/address", body={**key(id_or_name), **fields}),
        )

    def create_lineage(
        self, pipeline_id: int, sources: Sequence[Address], targets: Sequence[Address]
    ) -> LineageCreated:
        """Replace the pipeline's edges with sources x targets (no-op once load_lineage is off)."""
        body = {
            "pipeline_id": pipeline_id,
            "source_addresses": list(sources),
            "target_addresses": list(targets),
        }
        return cast(LineageCreated, self.request("POST", "/address_lineage", body=body))

    def get_lineage(self, address_id: int, depth: int | None = None) -> LineageGraph:
        return cast(
            LineageGraph,
            self.request("GET", f"/address_lineage/{address_id}", params={"depth": depth}),
        )

    def get_lineage_graph(self, source_address_id: int) -> NodeGraph:
        """The original Watcher's lineage graph around an address: nodes and edges."""
        return cast(
            NodeGraph,
            self.request("GET", "/lineage-graph/", params={"source_address_id": source_address_id}),
        )

    def refresh_lineage_graph(self) -> JSON:
        """The original's refresh: a no-op in Watcher (the graph is always current)."""
        return cast(JSON, self.request("POST", "/lineage-graph/refresh"))

    # -- pipeline dependencies -------------------------------------------------------------

    def get_upstream(self, pipeline_id: int, depth: int | None = None) -> JSON:
        """Pipelines upstream of this one (lineage and nesting), each with its depth."""
        params = _http.compact(depth=depth)
        path = f"/pipeline/{pipeline_id}/upstream"
        return cast(JSON, self.request("GET", path, params=params))

    def get_downstream(self, pipeline_id: int, depth: int | None = None) -> JSON:
        """Pipelines downstream of this one (lineage and nesting), each with its depth."""
        params = _http.compact(depth=depth)
        path = f"/pipeline/{pipeline_id}/downstream"
        return cast(JSON, self.request("GET", path, params=params))

    # -- OpenLineage -----------------------------------------------------------------------

    def send_lineage_event(self, event: Mapping[str, Any]) -> LineageEventResult:
        """Ingest one OpenLineage RunEvent, JobEvent or DatasetEvent (a JSON object)."""
        return cast(LineageEventResult, self.request("POST", "/api/v1/lineage", body=event))

    def send_lineage_batch(self, events: Sequence[Mapping[str, Any]]) -> LineageBatchResult:
        """Ingest events one by one; rejected ones are reported (`rejected`), not raised."""
        try:
            result = self.request("POST", "/api/v1/lineage/batch", body=list(events))
        except ValidationError as error:
            result = _http.partial_batch(error)
        return cast(LineageBatchResult, result)
