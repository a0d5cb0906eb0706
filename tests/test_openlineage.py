"""OpenLineage ingestion through the real openlineage-python client (its HTTP transport pointed
at a live Watcher), with the event shapes Airflow, dbt and Spark send; raw posts for the
malformed ones."""

from __future__ import annotations

import gzip
import json
import os
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import (
    DatasetEvent,
    InputDataset,
    Job,
    JobEvent,
    OutputDataset,
    Run,
    RunEvent,
    RunState,
    StaticDataset,
)
from openlineage.client.facet_v2 import (
    error_message_run,
    job_type_job,
    output_statistics_output_dataset,
    parent_run,
    processing_engine_run,
    schema_dataset,
    sql_job,
)
from openlineage.client.transport.http import HttpCompression, HttpConfig, HttpTransport

from tests.conftest import LiveServer

T0 = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
PRODUCER = "https://github.com/apache/airflow/tree/providers-openlineage/2.1.0"
SCHEMA = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat()


@pytest.fixture
def ol(live: LiveServer) -> OpenLineageClient:
    return OpenLineageClient(transport=HttpTransport(HttpConfig(url=live.url, timeout=30)))


def run_event(
    state: RunState,
    seconds: float,
    run_id: str,
    job: Job,
    *,
    facets: dict[str, Any] | None = None,
    inputs: list[InputDataset] | None = None,
    outputs: list[OutputDataset] | None = None,
) -> RunEvent:
    return RunEvent(
        eventType=state,
        eventTime=at(seconds),
        run=Run(runId=run_id, facets=facets or {}),
        job=job,
        producer=PRODUCER,
        inputs=inputs or [],
        outputs=outputs or [],
    )


def rows(count: int) -> dict[str, Any]:
    return {
        "outputStatistics": output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
            rowCount=count, size=count * 100
        )
    }


def parent(run_id: str, namespace: str, name: str) -> dict[str, Any]:
    return {
        "parent": parent_run.ParentRunFacet(
            run=parent_run.Run(runId=run_id), job=parent_run.Job(namespace=namespace, name=name)
        )
    }


def execution(live: LiveServer, run_id: str) -> dict[str, Any]:
    found = live.sql(
        "SELECT e.*, p.name AS pipeline, t.name AS pipeline_type FROM pipeline_execution e "
        "JOIN pipeline p ON p.id = e.pipeline_id "
        "JOIN pipeline_type t ON t.id = p.pipeline_type_id WHERE e.run_id = :r",
        r=run_id,
    )
    assert len(found) == 1, found
    return found[0]


def address(live: LiveServer, name: str) -> dict[str, Any]:
    found = live.sql(
        "SELECT a.*, t.name AS type, t.group_name FROM address a "
        "JOIN address_type t ON t.id = a.address_type_id WHERE a.name = :n",
        n=name,
    )
    assert len(found) == 1, name
    return found[0]


def new_id() -> str:
    return str(uuid.uuid4())


def test_an_airflow_task_run_becomes_an_execution_with_lineage(
    live: LiveServer, ol: OpenLineageClient, client: httpx.Client
) -> None:
    dag_run, task_run = new_id(), new_id()
    job = Job(
        namespace="default",
        name="etl_orders.load_orders",
        facets={"jobType": job_type_job.JobTypeJobFacet("BATCH", "AIRFLOW", "TASK")},
    )
    source = InputDataset(
        "postgres://db.example.com:5432",
        "shop.public.orders",
        facets={
            "schema": schema_dataset.SchemaDatasetFacet(
                [schema_dataset.SchemaDatasetFacetFields("id", "int")]
            )
        },
    )
    target = OutputDataset("s3://warehouse", "raw/orders", outputFacets=rows(120))
    task_parent = parent(dag_run, "default", "etl_orders")
    ol.emit(run_event(RunState.START, 0, task_run, job, facets=task_parent, inputs=[source]))
    ol.emit(
        run_event(
            RunState.COMPLETE,
            90,
            task_run,
            job,
            facets=task_parent,
            inputs=[source],
            outputs=[target],
        )
    )

    run = execution(live, task_run)
    assert run["pipeline"] == "default.etl_orders.load_orders"
    assert run["pipeline_type"] == "default"
    assert run["start_date"] == T0 and run["end_date"] == T0 + timedelta(seconds=90)
    assert run["completed_successfully"] is True
    assert run["duration_seconds"] == 90 and run["total_rows"] == 120
    assert run["parent_id"] == execution(live, dag_run)["id"]
    assert execution(live, dag_run)["pipeline"] == "default.etl_orders"
    assert execution(live, dag_run)["end_date"] is None
    orders = address(live, "postgres://db.example.com:5432/shop.public.orders")
    assert (orders["type"], orders["group_name"]) == ("postgres", "database")
    assert (orders["database_name"], orders["schema_name"], orders["table_name"]) == (
        "shop",
        "public",
        "orders",
    )
    assert (
        orders["address_metadata"]["openlineage"]["facets"]["schema"]["fields"][0]["name"] == "id"
    )
    raw = address(live, "s3://warehouse/raw/orders")
    assert (raw["type"], raw["group_name"]) == ("s3", "storage")
    graph = client.get(f"/address_lineage/{orders['id']}").json()
    assert [a["address_name"] for a in graph["downstream"]] == ["s3://warehouse/raw/orders"]
    pipeline = live.sql("SELECT * FROM pipeline WHERE name = 'default.etl_orders.load_orders'")[0]
    assert pipeline["load_lineage"] is False
    assert pipeline["pipeline_metadata"]["openlineage"]["facets"]["jobType"]["integration"] == (
        "AIRFLOW"
    )


def test_dbt_models_are_children_of_the_dbt_run(
    live: LiveServer, ol: OpenLineageClient, client: httpx.Client
) -> None:
    dbt_run = new_id()
    parent_job = Job(namespace="dbt", name="dbt-run-jaffle_shop")
    ol.emit(run_event(RunState.START, 0, dbt_run, parent_job))
    models = []
    for offset, model in enumerate(["stg_orders", "orders"]):
        model_run = new_id()
        models.append(model_run)
        job = Job(
            namespace="dbt",
            name=f"analytics.jaffle_shop.{model}",
            facets={"sql": sql_job.SQLJobFacet(query=f"select * from {model}", dialect="postgres")},
        )
        pg = "postgres://localhost:5432"
        io: dict[str, Any] = {
            "inputs": [InputDataset(pg, f"analytics.raw.raw_{model}")],
            "outputs": [OutputDataset(pg, f"analytics.jaffle_shop.{model}", outputFacets=rows(10))],
        }
        facets = parent(dbt_run, "dbt", "dbt-run-jaffle_shop")
        ol.emit(run_event(RunState.START, 10 + offset, model_run, job, facets=facets, **io))
        ol.emit(run_event(RunState.COMPLETE, 20 + offset, model_run, job, facets=facets, **io))
    ol.emit(run_event(RunState.COMPLETE, 60, dbt_run, parent_job))

    top = execution(live, dbt_run)
    assert top["completed_successfully"] is True and top["duration_seconds"] == 60
    children = client.get(f"/pipeline_execution/{top['id']}").json()["children"]
    assert sorted(c["id"] for c in children) == sorted(execution(live, m)["id"] for m in models)
    assert all(c["total_rows"] == 10 for c in children)
    depths = live.sql(
        "SELECT depth FROM pipeline_execution_closure WHERE ancestor_id = :a ORDER BY depth",
        a=top["id"],
    )
    assert [d["depth"] for d in depths] == [0, 1, 1]


def test_a_failed_spark_job_keeps_its_error_and_drops_huge_facets(
    live: LiveServer, ol: OpenLineageClient
) -> None:
    run_id = new_id()
    job = Job(namespace="spark_prod", name="daily_events.execute_insert_into_hadoop_fs_relation")
    pipeline = f"{job.namespace}.{job.name}"
    engine = {
        "processing_engine": processing_engine_run.ProcessingEngineRunFacet(
            version="3.5.1", name="spark", openlineageAdapterVersion="1.30.0"
        ),
        "spark.logicalPlan": {"plan": ["x" * 100] * 200},
    }
    io: dict[str, Any] = {
        "inputs": [InputDataset("bigquery", "proj.analytics.events")],
        "outputs": [OutputDataset("gs://lake", "daily/events")],
    }
    failure = {
        "errorMessage": error_message_run.ErrorMessageRunFacet(
            message="org.apache.spark.sql.AnalysisException: Table or view not found",
            programmingLanguage="JAVA",
            stackTrace="java.lang.RuntimeException: boom\n\tat Main.main(Main.java:1)",
        )
    }
    before = live.services.registry.get_sample_value(
        "watcher_executions_finished_total",
        {"pipeline": pipeline, "pipeline_type": "spark_prod", "status": "failure"},
    )
    ol.emit(run_event(RunState.START, 0, run_id, job, facets=engine, **io))
    ol.emit(run_event(RunState.FAIL, 30, run_id, job, facets=failure, **io))

    run = execution(live, run_id)
    assert run["completed_successfully"] is False
    metadata = run["execution_metadata"]
    assert metadata["error_message"].startswith("org.apache.spark.sql.AnalysisException")
    assert metadata["error_programming_language"] == "JAVA"
    assert "Main.java" in metadata["error_stack_trace"]
    assert metadata["openlineage"]["last_event_type"] == "FAIL"
    assert "processing_engine" in metadata["openlineage"]["facets"]
    assert "spark.logicalPlan" not in metadata["openlineage"]["facets"]
    events = address(live, "bigquery://proj.analytics.events")
    assert (events["type"], events["group_name"], events["table_name"]) == (
        "bigquery",
        "database",
        "events",
    )
    assert address(live, "gs://lake/daily/events")["group_name"] == "storage"
    # the failed run still records lineage; load_lineage stays true until a success
    assert len(live.sql("SELECT * FROM address_lineage")) == 1
    after = live.services.registry.get_sample_value(
        "watcher_executions_finished_total",
        {"pipeline": pipeline, "pipeline_type": "spark_prod", "status": "failure"},
    )
    assert (after or 0) - (before or 0) == 1


def test_a_terminal_event_without_start_records_the_run_and_a_late_start_moves_it_back(
    live: LiveServer, ol: OpenLineageClient
) -> None:
    run_id = new_id()
    job = Job(namespace="default", name="late.task")
    ol.emit(run_event(RunState.COMPLETE, 100, run_id, job))
    run = execution(live, run_id)
    assert run["end_date"] == T0 + timedelta(seconds=100)
    assert run["start_date"] == run["end_date"]  # zero duration until its START arrives
    assert run["execution_metadata"]["openlineage"]["start_inferred"] is True

    ol.emit(run_event(RunState.START, 40, run_id, job))
    run = execution(live, run_id)
    assert run["start_date"] == T0 + timedelta(seconds=40)
    assert run["duration_seconds"] == 60 and run["completed_successfully"] is True
    assert run["execution_metadata"]["openlineage"]["start_inferred"] is False


def test_duplicate_and_contradicting_late_events_are_harmless(
    live: LiveServer, ol: OpenLineageClient, client: httpx.Client
) -> None:
    run_id = new_id()
    job = Job(namespace="default", name="dup.task")
    start = run_event(RunState.START, 0, run_id, job)
    complete = run_event(
        RunState.COMPLETE,
        10,
        run_id,
        job,
        outputs=[OutputDataset("file", "/tmp/out.csv", outputFacets=rows(5))],
    )
    for event in (start, start, complete, complete):
        ol.emit(event)
    ol.emit(run_event(RunState.FAIL, 20, run_id, job))
    assert len(live.sql("SELECT * FROM pipeline_execution")) == 1
    run = execution(live, run_id)
    assert run["completed_successfully"] is True and run["total_rows"] == 5
    assert run["end_date"] == T0 + timedelta(seconds=10)
    assert address(live, "file:///tmp/out.csv")["group_name"] == "storage"
    again = client.post("/api/v1/lineage", content=orjson.dumps(_raw(complete)))
    assert again.status_code == 201 and again.json()["status"] == "ignored"


def test_running_events_merge_facets_and_lineage_is_the_union_over_the_run(
    live: LiveServer, ol: OpenLineageClient, client: httpx.Client
) -> None:
    run_id = new_id()
    job = Job(namespace="kafka_jobs", name="enrich")
    topic = InputDataset("kafka://broker:9092", "clicks")
    table = OutputDataset("snowflake://org-acct", "db.public.clicks")
    ol.emit(run_event(RunState.START, 0, run_id, job, inputs=[topic]))
    ol.emit(run_event(RunState.RUNNING, 5, run_id, job, facets={"progress": {"pct": 50}}))
    ol.emit(run_event(RunState.COMPLETE, 9, run_id, job, outputs=[table]))
    run = execution(live, run_id)
    assert run["execution_metadata"]["openlineage"]["facets"]["progress"] == {"pct": 50}
    clicks = address(live, "kafka://broker:9092/clicks")
    assert (clicks["type"], clicks["group_name"]) == ("kafka", "stream")
    down = client.get(f"/address_lineage/{clicks['id']}").json()["downstream"]
    assert [a["address_name"] for a in down] == ["snowflake://org-acct/db.public.clicks"]


def test_dataset_and_job_events_record_metadata(live: LiveServer, ol: OpenLineageClient) -> None:
    schema = schema_dataset.SchemaDatasetFacet(
        [schema_dataset.SchemaDatasetFacetFields("x", "int")]
    )
    ol.emit(
        DatasetEvent(
            eventTime=at(0),
            producer=PRODUCER,
            dataset=StaticDataset("mysql://db:3306", "shop.customers", facets={"schema": schema}),
        )
    )
    customers = address(live, "mysql://db:3306/shop.customers")
    assert (customers["database_name"], customers["table_name"]) == ("shop", "customers")
    assert (
        customers["address_metadata"]["openlineage"]["facets"]["schema"]["fields"][0]["name"] == "x"
    )
    ol.emit(
        JobEvent(
            eventTime=at(0),
            producer=PRODUCER,
            job=Job("default", "nightly.export", facets={"sql": sql_job.SQLJobFacet("select 1")}),
            inputs=[InputDataset("mysql://db:3306", "shop.customers")],
            outputs=[OutputDataset("s3://exports", "customers.csv")],
        )
    )
    pipeline = live.sql("SELECT * FROM pipeline WHERE name = 'default.nightly.export'")[0]
    assert pipeline["pipeline_metadata"]["openlineage"]["facets"]["sql"]["query"] == "select 1"
    assert (
        len(live.sql("SELECT * FROM address_lineage WHERE pipeline_id = :p", p=pipeline["id"])) == 1
    )
    assert live.sql("SELECT * FROM pipeline_execution") == []


def test_gzip_bodies_from_the_transport_are_accepted(live: LiveServer) -> None:
    transport = HttpTransport(
        HttpConfig(url=live.url, timeout=30, compression=HttpCompression.GZIP)
    )
    run_id = new_id()
    OpenLineageClient(transport=transport).emit(
        run_event(RunState.START, 0, run_id, Job("default", "zipped"))
    )
    assert execution(live, run_id)["end_date"] is None


def test_very_long_names_keep_a_prefix_and_a_hash(live: LiveServer, ol: OpenLineageClient) -> None:
    run_id = new_id()
    name = "app." + "execute_insert_into_hadoop_fs_relation_command" * 5
    ol.emit(run_event(RunState.START, 0, run_id, Job("spark", name)))
    pipeline = execution(live, run_id)["pipeline"]
    assert len(pipeline) == 150 and pipeline.startswith("spark.app.execute")
    ol.emit(run_event(RunState.START, 0, new_id(), Job("spark", name)))
    assert len(live.sql("SELECT * FROM pipeline")) == 1


def ancestors(live: LiveServer, run_id: str) -> list[tuple[str | None, int]]:
    """The run's closure rows upward: (ancestor's run_id, depth), nearest first."""
    found = live.sql(
        "SELECT a.run_id, c.depth FROM pipeline_execution_closure c"
        " JOIN pipeline_execution a ON a.id = c.ancestor_id"
        " JOIN pipeline_execution d ON d.id = c.descendant_id"
        " WHERE d.run_id = :r ORDER BY c.depth",
        r=run_id,
    )
    return [(r["run_id"], r["depth"]) for r in found]


def rooted(run_id: str, namespace: str, name: str, root_id: str, root_name: str) -> dict[str, Any]:
    return {
        "parent": parent_run.ParentRunFacet(
            run=parent_run.Run(runId=run_id),
            job=parent_run.Job(namespace=namespace, name=name),
            root=parent_run.Root(
                run=parent_run.RootRun(runId=root_id),
                job=parent_run.RootJob(namespace=namespace, name=root_name),
            ),
        )
    }


def test_a_placeholder_parent_takes_its_own_parent_when_its_events_arrive_late(
    live: LiveServer, ol: OpenLineageClient, client: httpx.Client
) -> None:
    # Airflow DAG run → dbt run → dbt model, the model's events first, each naming only its
    # parent (no root facet): the dbt run is created as a placeholder without a parent.
    dag, dbt, model = new_id(), new_id(), new_id()
    dag_job, dbt_job = Job("airflow", "jaffle_dag"), Job("dbt", "dbt-run-jaffle_shop")
    model_job = Job("dbt", "analytics.jaffle_shop.orders")
    model_parent = parent(dbt, "dbt", "dbt-run-jaffle_shop")
    ol.emit(run_event(RunState.START, 10, model, model_job, facets=model_parent))
    assert execution(live, dbt)["parent_id"] is None
    ol.emit(run_event(RunState.COMPLETE, 20, model, model_job, facets=model_parent))
    dbt_parent = parent(dag, "airflow", "jaffle_dag")
    ol.emit(run_event(RunState.START, 5, dbt, dbt_job, facets=dbt_parent))
    ol.emit(run_event(RunState.COMPLETE, 30, dbt, dbt_job, facets=dbt_parent))
    ol.emit(run_event(RunState.START, 0, dag, dag_job))
    ol.emit(run_event(RunState.COMPLETE, 40, dag, dag_job))

    assert execution(live, model)["parent_id"] == execution(live, dbt)["id"]
    assert execution(live, dbt)["parent_id"] == execution(live, dag)["id"]
    assert execution(live, dag)["parent_id"] is None
    assert ancestors(live, model) == [(model, 0), (dbt, 1), (dag, 2)]
    assert ancestors(live, dbt) == [(dbt, 0), (dag, 1)]
    tree = client.get(f"/pipeline_execution/{execution(live, dag)['id']}").json()
    assert [c["id"] for c in tree["children"]] == [execution(live, dbt)["id"]]
    assert len(live.sql("SELECT * FROM pipeline_execution")) == 3


def test_a_parent_inferred_from_a_root_facet_gives_way_to_the_runs_own_facet(
    live: LiveServer, ol: OpenLineageClient
) -> None:
    # DAG run → task run → dbt run → model. The model names its parent (dbt run) and the root
    # (DAG run), so the dbt run is first placed straight under the root; its own facet moves
    # it, with the model below it, under the task run.
    dag, task, dbt, model = new_id(), new_id(), new_id(), new_id()
    facets = rooted(dbt, "prod", "dbt_run", dag, "dag")
    ol.emit(run_event(RunState.START, 10, model, Job("prod", "model"), facets=facets))
    assert execution(live, dbt)["parent_id"] == execution(live, dag)["id"]  # inferred
    own = rooted(task, "prod", "dag.task", dag, "dag")
    ol.emit(run_event(RunState.START, 5, dbt, Job("prod", "dbt_run"), facets=own))
    assert execution(live, dbt)["parent_id"] == execution(live, task)["id"]
    assert execution(live, task)["parent_id"] == execution(live, dag)["id"]
    assert ancestors(live, model) == [(model, 0), (dbt, 1), (task, 2), (dag, 3)]
    # Once placed by its own facet, a contradicting later facet does not move it again.
    other = rooted(new_id(), "prod", "dag.other", dag, "dag")
    ol.emit(run_event(RunState.COMPLETE, 30, dbt, Job("prod", "dbt_run"), facets=other))
    assert execution(live, dbt)["parent_id"] == execution(live, task)["id"]
    assert ancestors(live, model) == [(model, 0), (dbt, 1), (task, 2), (dag, 3)]


def test_a_parent_facet_naming_a_descendant_is_refused(
    live: LiveServer, ol: OpenLineageClient, client: httpx.Client
) -> None:
    top, child = new_id(), new_id()
    ol.emit(
        run_event(RunState.START, 0, child, Job("prod", "child"), facets=parent(top, "prod", "top"))
    )
    loop = valid(
        run={"runId": top, "facets": _raw_facets(parent(child, "prod", "child"))},
        job={"namespace": "prod", "name": "top"},
    )
    response = client.post("/api/v1/lineage", json=loop)
    assert response.status_code == 422 and "descendant" in response.json()["detail"]
    assert execution(live, top)["parent_id"] is None


def test_abort_ends_the_run_as_failed(live: LiveServer, ol: OpenLineageClient) -> None:
    run_id = new_id()
    job = Job(namespace="spark_prod", name="cancelled.job")
    ol.emit(run_event(RunState.START, 0, run_id, job))
    ol.emit(run_event(RunState.ABORT, 15, run_id, job))
    run = execution(live, run_id)
    assert run["completed_successfully"] is False
    assert run["end_date"] == T0 + timedelta(seconds=15) and run["duration_seconds"] == 15
    assert run["execution_metadata"]["openlineage"]["last_event_type"] == "ABORT"
    ol.emit(run_event(RunState.COMPLETE, 20, run_id, job))  # the first terminal event wins
    assert execution(live, run_id)["completed_successfully"] is False


def test_other_events_and_events_without_a_type_update_a_running_run(
    live: LiveServer, ol: OpenLineageClient, client: httpx.Client
) -> None:
    run_id = new_id()
    job = Job(namespace="default", name="typeless.task")
    ol.emit(run_event(RunState.OTHER, 0, run_id, job, facets={"progress": {"pct": 0}}))
    run = execution(live, run_id)
    assert run["start_date"] == T0 and run["end_date"] is None  # a run starts on any event
    assert run["execution_metadata"]["openlineage"]["last_event_type"] == "OTHER"
    untyped = RunEvent(
        eventTime=at(5),
        run=Run(runId=run_id, facets={"progress": {"pct": 50}}),  # type: ignore[dict-item]  # a custom facet
        job=job,
        producer=PRODUCER,
    )
    assert "eventType" not in _raw(untyped)  # the client leaves it out altogether
    ol.emit(untyped)
    run = execution(live, run_id)
    assert run["end_date"] is None and run["completed_successfully"] is None
    assert run["execution_metadata"]["openlineage"]["facets"]["progress"] == {"pct": 50}
    assert run["execution_metadata"]["openlineage"]["last_event_type"] == "OTHER"
    ol.emit(run_event(RunState.COMPLETE, 9, run_id, job))
    late = client.post("/api/v1/lineage", content=orjson.dumps(_raw(untyped)))
    assert (late.status_code, late.json()["status"]) == (201, "ignored")
    assert execution(live, run_id)["completed_successfully"] is True


def test_a_row_count_sent_while_running_is_kept_for_the_end(
    live: LiveServer, ol: OpenLineageClient
) -> None:
    run_id = new_id()
    job = Job(namespace="spark_prod", name="counted.job")
    orders = OutputDataset("s3://lake", "orders", outputFacets=rows(70))
    items = OutputDataset("s3://lake", "items", outputFacets=rows(30))
    ol.emit(run_event(RunState.START, 0, run_id, job))
    ol.emit(run_event(RunState.RUNNING, 5, run_id, job, outputs=[orders, items]))
    # The end lists the outputs again, one of them without statistics, one with a new count.
    bare = OutputDataset("s3://lake", "orders")
    recount = OutputDataset("s3://lake", "items", outputFacets=rows(35))
    ol.emit(run_event(RunState.COMPLETE, 10, run_id, job, outputs=[bare, recount]))
    run = execution(live, run_id)
    assert run["total_rows"] == 70 + 35
    assert run["execution_metadata"]["openlineage"]["row_counts"] == {
        "s3://lake/orders": 70,
        "s3://lake/items": 35,
    }
    assert run["throughput"] == pytest.approx(105 / 10)


def _raw_facets(facets: dict[str, Any]) -> dict[str, Any]:
    from openlineage.client.serde import Serde

    return {k: orjson.loads(Serde.to_json(v)) for k, v in facets.items()}


def _raw(event: RunEvent) -> dict[str, Any]:
    from openlineage.client.serde import Serde

    return orjson.loads(Serde.to_json(event))  # type: ignore[no-any-return]


def valid(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "eventType": "START",
        "eventTime": at(0),
        "producer": PRODUCER,
        "schemaURL": SCHEMA,
        "run": {"runId": new_id()},
        "job": {"namespace": "default", "name": "raw.job"},
    }
    return body | changes


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({k: v for k, v in valid().items() if k != "eventTime"}, ["body", "eventTime"]),
        (valid(run={"runId": "not-a-uuid"}), ["body", "run", "runId"]),
        (valid(eventType="DONE"), ["body", "eventType"]),
        (valid(job={"namespace": "", "name": "x"}), ["body", "job", "namespace"]),
        (
            valid(
                outputs=[
                    {
                        "namespace": "s3://b",
                        "name": "k",
                        "outputFacets": {"outputStatistics": {"rowCount": -1}},
                    }
                ]
            ),
            ["body", "outputs", 0, "outputFacets", "outputStatistics", "rowCount"],
        ),
        (
            valid(
                run={
                    "runId": new_id(),
                    "facets": {"parent": {"job": {"namespace": "a", "name": "b"}}},
                }
            ),
            ["body", "run", "facets", "parent", "run"],
        ),
        ({"hello": "world"}, ["body"]),
        ([valid()], ["body"]),
    ],
)
def test_invalid_events_are_refused_with_the_reason(
    client: httpx.Client, body: Any, loc: list[Any]
) -> None:
    response = client.post("/api/v1/lineage", content=orjson.dumps(body))
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == loc
    assert response.json()["detail"]


def test_non_json_and_broken_gzip_are_bad_requests(client: httpx.Client) -> None:
    assert client.post("/api/v1/lineage", content=b"{not json").status_code == 400
    assert client.post("/api/v1/lineage", content=b"").status_code == 400
    broken = client.post(
        "/api/v1/lineage", content=b"garbage", headers={"Content-Encoding": "gzip"}
    )
    assert broken.status_code == 400 and "gzip" in broken.json()["detail"]
    zipped = client.post(
        "/api/v1/lineage",
        content=gzip.compress(orjson.dumps(valid())),
        headers={"Content-Encoding": "gzip"},
    )
    assert zipped.status_code == 201


def test_inconsistent_runs_are_refused(live: LiveServer, client: httpx.Client) -> None:
    own = new_id()
    selfish = valid(
        run={
            "runId": own,
            "facets": {"parent": {"run": {"runId": own}, "job": {"namespace": "a", "name": "b"}}},
        }
    )
    assert client.post("/api/v1/lineage", json=selfish).status_code == 422
    run_id = new_id()
    assert client.post("/api/v1/lineage", json=valid(run={"runId": run_id})).status_code == 201
    other_job = valid(run={"runId": run_id}, job={"namespace": "default", "name": "other"})
    assert client.post("/api/v1/lineage", json=other_job).status_code == 409
    # An end before the start (a skewed clock, a naive local time) is not lost: the run ends
    # at its start and keeps the eventTime it was sent.
    early_end = valid(run={"runId": run_id}, eventType="COMPLETE", eventTime=at(-10))
    assert client.post("/api/v1/lineage", json=early_end).status_code == 201
    run = execution(live, run_id)
    assert run["end_date"] == run["start_date"]
    assert run["execution_metadata"]["openlineage"]["reported_end_time"] == at(-10)


def test_a_batch_stores_each_valid_event_and_lists_the_rejected(
    live: LiveServer, client: httpx.Client
) -> None:
    first, second = valid(), valid(eventType="COMPLETE", eventTime=at(5))
    second["run"] = first["run"]
    response = client.post("/api/v1/lineage/batch", json=[first, {"eventTime": at(0)}, second])
    assert response.status_code == 422
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (2, 1)
    assert [r["status_code"] for r in body["results"]] == [201, 422, 201]
    assert execution(live, first["run"]["runId"])["completed_successfully"] is True
    ok = client.post("/api/v1/lineage/batch", json=[valid()])
    assert ok.status_code == 200 and ok.json()["accepted"] == 1
    assert client.post("/api/v1/lineage/batch", json={"events": []}).status_code == 422


# --- the documented transport configurations (docs/openlineage.md), fed to the real client ---


def readme_blocks(repo_root: Path, fence: str) -> list[str]:
    page = (repo_root / "docs" / "openlineage.md").read_text()
    return re.findall(rf"```{fence}\n(.*?)```", page, flags=re.S)


@pytest.fixture
def clean_env() -> Iterator[None]:
    """The client copies OPENLINEAGE_* variables into os.environ: put everything back."""
    saved = dict(os.environ)
    for key in [k for k in os.environ if k.startswith("OPENLINEAGE")]:
        del os.environ[key]
    yield
    os.environ.clear()
    os.environ.update(saved)


def emit_one(client: OpenLineageClient, live: LiveServer, name: str) -> None:
    run_id = new_id()
    client.emit(run_event(RunState.START, 0, run_id, Job("readme", name)))
    assert execution(live, run_id)["pipeline"] == f"readme.{name}"


def test_the_readme_airflow_transport_reaches_watcher(
    live: LiveServer, repo_root: Path, clean_env: None
) -> None:
    airflow = readme_blocks(repo_root, "sh")[0]
    found = re.search(r"AIRFLOW__OPENLINEAGE__TRANSPORT='(.*?)'", airflow)
    assert found is not None
    transport = json.loads(found.group(1).replace("http://watcher.example:8000", live.url))
    emit_one(OpenLineageClient(config={"transport": transport}), live, "airflow_task")


def test_the_readme_dbt_environment_reaches_watcher(
    live: LiveServer, repo_root: Path, clean_env: None
) -> None:
    dbt = readme_blocks(repo_root, "sh")[1]
    exported = dict(re.findall(r"^export (OPENLINEAGE_\w+)=(\S+)$", dbt, flags=re.M))
    assert set(exported) == {"OPENLINEAGE_URL", "OPENLINEAGE_API_KEY", "OPENLINEAGE_NAMESPACE"}
    os.environ.update(exported | {"OPENLINEAGE_URL": live.url})
    emit_one(OpenLineageClient(), live, "dbt_model")


def test_the_readme_openlineage_yml_reaches_watcher(
    live: LiveServer, repo_root: Path, clean_env: None, tmp_path: Path
) -> None:
    config = tmp_path / "openlineage.yml"
    yml = readme_blocks(repo_root, "yaml")[0]
    config.write_text(yml.replace("http://watcher.example:8000", live.url))
    os.environ["OPENLINEAGE_CONFIG"] = str(config)
    emit_one(OpenLineageClient(), live, "from_yml")


def test_the_readme_spark_conf_names_the_same_endpoint(repo_root: Path) -> None:
    spark = readme_blocks(repo_root, "sh")[2]
    conf = dict(re.findall(r"--conf (spark\.openlineage\.[\w.]+)=(\S+)", spark))
    assert conf["spark.openlineage.transport.type"] == "http"
    assert conf["spark.openlineage.transport.url"] == "http://watcher.example:8000"
    assert conf["spark.openlineage.transport.endpoint"] == "/" + post_lineage_path()[1:]
    assert conf["spark.openlineage.transport.auth.type"] == "api_key"


def post_lineage_path() -> str:
    from watcher.openlineage.routes import router

    return next(op.path for op in router.operations if op.path.endswith("lineage"))


def test_concurrent_duplicates_of_a_new_run_record_it_once(
    live: LiveServer, client: httpx.Client
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    dag_run, run_id = new_id(), new_id()
    facets = {"parent": {"run": {"runId": dag_run}, "job": {"namespace": "race", "name": "dag"}}}
    io: dict[str, Any] = {
        "inputs": [{"namespace": "postgres://db:5432", "name": "a.b.src"}],
        "outputs": [{"namespace": "postgres://db:5432", "name": "a.b.dst"}],
    }
    job = {"namespace": "race", "name": "dag.task"}
    events = [
        valid(run={"runId": run_id, "facets": facets}, job=job, **io),
        valid(
            run={"runId": run_id, "facets": facets},
            job=job,
            eventType="COMPLETE",
            eventTime=at(9),
            **io,
        ),
    ]

    def post(body: dict[str, Any]) -> int:
        with httpx.Client(base_url=live.url, timeout=30) as http:
            return http.post("/api/v1/lineage", json=body).status_code

    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(post, [events[0]] * 8))
    assert set(codes) == {201}
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(post, [events[1]] * 8))
    assert set(codes) == {201}
    assert len(live.sql("SELECT * FROM pipeline_execution")) == 2  # the task and its DAG run
    assert execution(live, run_id)["completed_successfully"] is True
    assert len(live.sql("SELECT * FROM pipeline WHERE name LIKE 'race.%'")) == 2
    assert len(live.sql("SELECT * FROM address_lineage")) == 1


@pytest.mark.parametrize("depth", [40, 300, 1000])
def test_a_facet_nested_too_deep_to_keep_is_dropped_and_the_event_recorded(
    live: LiveServer, client: httpx.Client, depth: int
) -> None:
    deep = '{"child":' * depth + '"leaf"' + "}" * depth  # deeper than orjson can write
    run_id = new_id()
    event = valid(
        run={"runId": run_id, "facets": {"spark.plan": "DEEP", "small": {"ok": 1}}},
        inputs=[{"namespace": "postgres://db:5432", "name": "db.public.src", "facets": {}}],
    )
    event["inputs"][0]["facets"] = {"x": "DEEP"}
    body = orjson.dumps(event).replace(b'"DEEP"', deep.encode())
    response = client.post("/api/v1/lineage", content=body)
    assert response.status_code == 201, response.text
    facets = execution(live, run_id)["execution_metadata"]["openlineage"]["facets"]
    assert "spark.plan" not in facets and facets["small"] == {"ok": 1}


def test_an_event_nested_too_deep_outside_its_facets_is_refused(client: httpx.Client) -> None:
    deep = '{"a":' * 300 + "1" + "}" * 300
    body = orjson.dumps(valid(producer="DEEP")).replace(b'"DEEP"', deep.encode())
    response = client.post("/api/v1/lineage", content=body)
    assert response.status_code == 422 and "nested deeper" in response.json()["detail"]
